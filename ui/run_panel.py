"""The run panel: which of a page's runs the store holds (through `experiment.lookup`), a time estimate
for the others from the store's timings, and a Run button that computes them in the background
(`ui.jobs`) while a live panel shows the one-off work, per-run progress and a Cancel button."""
from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from autoft_core.config import RunConfig, code_version
from autoft_core.runs import lookup_many

from . import jobs, output
from .commands import run_command
from .engine import PlannedRun, Settings, store_path
from .frames import RunRef, estimate

POLL_SECONDS = 1.0


def _job_key(key: str) -> str:
    return f"job.{key}"


def duration(seconds: float) -> str:
    """'45 s', '3.5 min' or '1.2 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _estimate_text(missing: Sequence[RunConfig]) -> str:
    guess = estimate(output.stored_runs(), missing)
    if not guess.estimated:
        return "No similar run is stored yet, so no time estimate (the first run shows how long they take)."
    text = f"Estimated ≈ {duration(guess.seconds)}"
    if guess.estimated < guess.total:
        text += f" for {guess.estimated} of the {guess.total} runs (the others have no similar stored run)"
    return text + (f", from {guess.basis} stored run{'s' if guess.basis != 1 else ''} of the same setup and method "
                   "(the nearest shots, scaled by epochs).")


def panel(configs: Sequence[RunConfig], settings: Settings, problems: Sequence[str], key: str,
          what: str = "runs") -> list[dict | None]:
    """The stored record of each config (None where missing); a Run button for the missing ones."""
    records: list[dict | None] = [found.record for found in lookup_many(configs, output.store(), settings.paths)]
    missing = [cfg for cfg, record in zip(configs, records) if record is None]
    job: jobs.Job | None = st.session_state.get(_job_key(key))
    for problem in problems:
        st.error(problem, icon="⚠️")
    left, right = st.columns([1, 3], vertical_alignment="center")
    running = job is not None and job.active
    label = f"Run {len(missing)} missing" if missing else "All computed"
    if left.button(label, type="primary", key=f"run.{key}", disabled=not missing or bool(problems) or running):
        job = jobs.start(key, missing, output.store(), settings.paths, settings.device)
        st.session_state[_job_key(key)] = job
    right.caption(f"{len(configs) - len(missing)} of {len(configs)} {what} are in the store (shown at once); "
                  f"finished runs are never recomputed. " + (_estimate_text(missing) + " " if missing else "")
                  + f"Engine code version {code_version()}: runs of other engine code are not reused.")
    if job is not None and job.active:
        _live(key)
    elif job is not None:
        _summary(job)
    return records


@st.fragment(run_every=POLL_SECONDS)
def _live(key: str) -> None:
    """Redrawn every second while the job runs: one-off work, progress, Cancel; the whole page at the end."""
    job: jobs.Job = st.session_state[_job_key(key)]
    if not job.active:
        st.rerun()  # draw the page afresh from the store
    for line in job.one_off:
        st.info(line, icon=":material/hourglass_top:")
    done = len(job.finished)
    total = max(job.to_run, 1)
    st.progress(min(done / total, 1.0), text=f"{done} of {job.to_run or '…'} runs finished · "
                                             f"{duration(job.elapsed())} so far")
    if job.current:
        epochs = f"epoch {job.epoch} of {job.epochs}" if job.epochs else "preparing"
        st.progress(job.epoch / job.epochs if job.epochs else 0.0, text=f"{job.current} · {epochs} · {job.note}")
    if job.cancel_requested.is_set():
        st.warning("Cancelling: the current run stops at the end of its epoch; finished runs stay in the store.")
    else:
        st.button("Cancel", key=f"cancel.{key}", on_click=job.cancel, icon=":material/stop:",
                  help="Stop after the current epoch; the finished runs are kept.")
    if job.finished:
        with st.expander(f"Finished runs ({done})"):
            st.text("\n".join(job.finished))


def _summary(job: jobs.Job) -> None:
    """How the last job of this panel ended."""
    done = len(job.finished)
    if job.state == jobs.CANCELLED:
        st.warning(f"Cancelled after {done} of {job.to_run} runs ({duration(job.elapsed())}); the {done} finished "
                   f"run{'s are' if done != 1 else ' is'} stored and shown below. Press Run to go on.",
                   icon=":material/stop_circle:")
    elif job.state == jobs.FAILED:
        st.error(f"Stopped after {done} of {job.to_run} runs: {job.error}", icon="⚠️")
    else:
        st.success(f"Ran {done} run{'s' if done != 1 else ''} in {duration(job.elapsed())}.", icon=":material/check:")
    for line in job.one_off:
        st.info(line, icon=":material/hourglass_top:")


def runs(plan: Sequence[PlannedRun], settings: Settings, problems: Sequence[str], key: str) -> list[RunRef]:
    """The panel for a page's planned runs; their stored results (the page stops while there are none).
    Each run's `finetune` command goes into the page report."""
    records = panel([p.cfg for p in plan], settings, problems, key)
    output.report().add_commands([run_command(p.cfg, "finetune", store_path(), settings.device) for p in plan])
    found = [RunRef(p.label, p.seed, p.shots, record) for p, record in zip(plan, records) if record is not None]
    for ref in found:
        if ref.result.get("status") == "diverged":
            st.warning(f"{ref.label} · seed {ref.seed}: training diverged at epoch {ref.result.get('diverged_epoch')} "
                       "(the loss became infinite or NaN): lower the learning rate. It is stored as diverged, "
                       "without a final accuracy; the other runs went on.", icon="⚠️")
    if not found:
        st.info("No run of this selection is in the store yet: press **Run** above.")
        st.stop()
    return found
