"""Streamlit pieces every page shares: the page frame (config, navigation, sidebar settings), the task
and method pickers, the run panel (store look-up, then progress while the missing runs compute), the
error guard, and chart and table output with downloads. Engine work goes through
`autoft_core.dashboard_api` only.

It lives in pages/__init__.py because that is the one file in pages/ that Streamlit's pages-folder
convention does not turn into a page; every page imports it as `pages`.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd
from pandas.io.formats.style import Styler
import plotly.graph_objects as go
import streamlit as st

from autoft_core import dashboard_api as api
from autoft_core.errors import AutoFTError
from autoft_core.store import ResultStore

LOG = logging.getLogger("autoft.dashboard")
SHIFT_NAMES = {"input": "input-level (corrupted images)", "feature": "feature-level (unseen subclasses)",
               "output": "output-level (flipped labels)"}
PERSIST = {"persist_state": "session"}  # page widgets keep their value across page switches
PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D", "#EECA3B")


# ----------------------------------------------------------------------------- errors

@contextmanager
def guard(what: str = "This step") -> Iterator[None]:
    """Show an AutoFTError's message inline, and any other failure as one short line (no traceback)."""
    try:
        yield
    except AutoFTError as exc:
        st.error(str(exc), icon="⚠️")
    except Exception as exc:  # the page must keep working; the details go to the server log
        LOG.exception("%s failed", what)
        st.error(f"{what} failed unexpectedly ({type(exc).__name__}: {exc}). Details are in the server log.",
                 icon="🛑")


# ----------------------------------------------------------------------------- page frame

NAVIGATION = (
    ("app.py", "Overview", ":material/home:"),
    ("pages/layer_weights.py", "Layer weights", ":material/bar_chart:"),
    ("pages/finetune_compare.py", "Fine-tune & compare", ":material/model_training:"),
    ("pages/param_change.py", "Parameter change", ":material/difference:"),
    ("pages/shot_scaling.py", "Shot scaling", ":material/trending_up:"),
    ("pages/results.py", "Results", ":material/table_chart:"),
)


def frame(title: str) -> None:
    """Call first on every page: page config, the navigation links and the shared sidebar settings."""
    st.set_page_config(page_title=f"{title} · AutoFT Explorer", page_icon=":material/tune:", layout="wide")
    for path, label, icon in NAVIGATION:
        st.sidebar.page_link(path, label=label, icon=icon)
    st.sidebar.divider()
    render_sidebar()


# ----------------------------------------------------------------------------- sidebar settings

def render_sidebar() -> None:
    """The shared settings (recipe, seeds, device, real-setup paths), kept in st.session_state."""
    side = st.sidebar
    side.header("Settings")
    side.multiselect("Seeds", list(range(10)), default=[0], key="settings.seeds", **PERSIST,
                     help="Each run is repeated per seed; tables show mean ± std over seeds.")
    side.number_input("Epochs", min_value=0, max_value=500, value=5, step=1, key="settings.epochs", **PERSIST,
                      help="Fine-tuning epochs (the papers' recipe is 15 on digits and CIFAR-10).")
    side.number_input("Shots (total training examples)", min_value=0, value=None, step=50, key="settings.shots",
                      placeholder="setup default (1000)", **PERSIST,
                      help="Balanced over classes; capped by what the target pool holds (digits: 428).")
    side.number_input("Learning rate", min_value=0.0, value=None, step=1e-4, format="%g", key="settings.lr",
                      placeholder="setup default (digits 1e-3)", **PERSIST)
    side.selectbox("Device", ["auto", "cpu", "cuda"], key="settings.device", **PERSIST,
                   help=f"auto uses {device_summary()}")
    if problem := api.device_problem(st.session_state["settings.device"]):
        side.error(problem)
    with side.expander("Real-setup paths"):
        st.caption("Only the CIFAR-10 and BREEDS setups need files; the digits setup is embedded.")
        for name, value in api.env_paths().items():
            st.text_input(api.PATH_LABELS[name], value=value, key=f"settings.path.{name}", **PERSIST)
        _, problems = api.path_problems(_raw_paths())
        for problem in problems:
            st.error(problem)
    side.caption(f"Result store: `{api.store_path()}`")


@st.cache_resource(show_spinner="Starting the engine (importing PyTorch)…")
def device_summary() -> str:
    """What `auto` picks on this server (asked once per process)."""
    return api.device_summary()


def _raw_paths() -> dict[str, str]:
    return {name: st.session_state.get(f"settings.path.{name}", "") for name in api.PATH_LABELS}


def recipe() -> tuple[api.Recipe, list[str]]:
    """The sidebar's settings as a Recipe, and why they cannot fine-tune (empty when they can)."""
    state = st.session_state
    paths, _ = api.path_problems(_raw_paths())
    seeds = tuple(sorted(state.get("settings.seeds", [0])))
    epochs, shots, lr = state.get("settings.epochs", 5), state.get("settings.shots"), state.get("settings.lr")
    device = state.get("settings.device", "auto")
    problems = api.recipe_problems(epochs, shots, lr, seeds)
    if problem := api.device_problem(device):
        problems.append(problem)
    return api.Recipe(epochs=epochs, shots=shots or None, lr=lr or None, seeds=seeds, device=device,
                      paths=paths), problems


# ----------------------------------------------------------------------------- pickers

@st.cache_data(show_spinner=False, ttl=60)
def setups(paths: api.DataPaths) -> list[dict[str, Any]]:
    """Every setup with its readiness (cached a minute: `missing()` looks at the disk)."""
    return api.setups_overview(paths)


def task_picker(paths: api.DataPaths) -> api.Task:
    """Setup, shift, corruption + severity (input-level), granularity; stops the page if unusable."""
    ready = {row["setup"]: row for row in setups(paths)}
    cols = st.columns([1.2, 1.6, 1.6, 1, 1])
    setup = cols[0].selectbox("Setup", list(ready), key="task.setup", **PERSIST,
                              format_func=lambda n: n if ready[n]["ready"] else f"{n} (files missing)")
    if not ready[setup]["ready"]:
        st.error(f"Setup **{setup}** cannot run here: " + " ".join(ready[setup]["missing"]))
        st.stop()
    choices = api.setup_choices(setup, paths)
    shifts = choices["shifts"]
    shift = cols[1].selectbox("Shift", shifts, key=f"task.shift.{setup}", **PERSIST,
                              index=shifts.index("output") if "output" in shifts else 0,
                              format_func=lambda s: SHIFT_NAMES.get(s, s))
    corruption, severity = None, 5
    if shift == "input":
        corruption = cols[2].selectbox("Corruption", choices["corruptions"], key=f"task.corruption.{setup}",
                                       **PERSIST)
        severity = cols[3].select_slider("Severity", [1, 2, 3, 4, 5], value=5, key="task.severity", **PERSIST)
    level = cols[4].radio("Granularity", ["module", "block"], key="task.granularity", **PERSIST,
                          help="module: every conv/linear layer; block: the papers' blocks")
    return api.Task(setup, shift, corruption, severity, level)


def method_picker() -> dict[str, dict[str, Any]]:
    """The chosen methods with their non-default hyper-parameters; stops the page if none is chosen."""
    catalogue = api.method_catalogue()
    names = list(catalogue)
    chosen = st.multiselect("Methods", names, default=api.default_methods(names), key="task.methods", **PERSIST,
                            help="Every registered weighting method; new ones appear here automatically.")
    if not chosen:
        st.info("Pick at least one method.")
        st.stop()
    with st.expander("Methods and hyper-parameters"):
        for name in chosen:
            st.markdown(f"**{name}**: {catalogue[name]['summary']}")
            cols = st.columns(3)
            for i, (key, param) in enumerate(catalogue[name]["params"].items()):
                with cols[i % 3]:
                    _param_widget(name, key, param)
    return {name: api.non_default_params(name, {k: st.session_state[f"param.{name}.{k}"]
                                                for k in catalogue[name]["params"]})
            for name in chosen}


def _param_widget(method: str, name: str, param: Any) -> None:
    """One widget for one hyper-parameter, chosen by its default's type (its value lands in session_state)."""
    key, default = f"param.{method}.{name}", param.default
    common = {"key": key, "help": param.help, **PERSIST}
    if param.choices:
        options = list(param.choices)
        st.selectbox(name, options, index=options.index(default) if default in options else 0, **common)
    elif isinstance(default, bool):
        st.checkbox(name, value=default, **common)
    elif isinstance(default, int):
        st.number_input(name, value=default, step=1, **common)
    elif isinstance(default, float):
        st.number_input(name, value=default, format="%g", step=abs(default) / 10 or 0.1, **common)
    else:
        st.text_input(name, value=str(default), **common)


# ----------------------------------------------------------------------------- store and runs

@st.cache_resource
def _store(path: str) -> ResultStore:
    return ResultStore(path)


def store() -> ResultStore:
    """The shared result store (one object per process; SQLite WAL makes concurrent tabs safe)."""
    return _store(str(api.store_path()))


@st.cache_data(show_spinner="Reading the result store…")
def _runs_frame(path: str, version: tuple[int, ...]) -> pd.DataFrame:
    return api.runs_frame(ResultStore(path))


def stored_runs() -> pd.DataFrame:
    """Every stored run (cached until the store file changes, so other tabs' runs show up)."""
    path = api.store_path()
    store()  # creates the file on first use
    return _runs_frame(str(path), api.store_version(path))


@st.cache_resource
def weights_memo() -> dict[tuple, dict]:
    """Layer weights already computed in this server process, shared by every tab."""
    return {}


def run_panel(plan: Sequence[api.PlannedRun], recipe_: api.Recipe, problems: Sequence[str],
              key: str) -> list[api.RunRef]:
    """Stored results of `plan` at once; a button computes the missing runs with per-epoch progress."""
    results: dict[int, dict | None] = {}
    with guard("Looking up stored results"):
        results = {i: api.stored_result(store(), p.cfg, recipe_.paths) for i, p in enumerate(plan)}
    missing = [i for i, p in enumerate(plan) if results.get(i) is None]
    for problem in problems:
        st.error(problem, icon="⚠️")
    left, right = st.columns([1, 3], vertical_alignment="center")
    clicked = left.button(f"Run {len(missing)} missing" if missing else "All computed", type="primary",
                          disabled=not missing or bool(problems), key=f"run.{key}")
    right.caption(f"{len(plan) - len(missing)} of {len(plan)} runs are already in the store (shown at once); "
                  f"finished runs are never recomputed. Engine code version {api.code_version()}: runs "
                  "made by other engine code are not reused.")
    if clicked and _run_missing(plan, missing, recipe_, results):
        st.rerun()  # everything is in the store now: draw the page afresh from it
    for p, result in zip(plan, (results.get(i) for i in range(len(plan)))):
        if result and result.get("status") == "diverged":
            st.warning(api.diverged_message(f"{p.label} · seed {p.seed}", result), icon="⚠️")
    return [api.RunRef(p.label, p.seed, p.shots, results[i]) for i, p in enumerate(plan) if results.get(i)]


def _run_missing(plan: Sequence[api.PlannedRun], missing: list[int], recipe_: api.Recipe,
                 results: dict[int, dict | None]) -> bool:
    """Compute each missing run inside its own st.status, with a progress bar over its epochs.

    Stops at the first failure (its message stays on the page); a diverged run is a result and the others go
    on. True when every run finished.
    """
    overall = st.progress(0.0, text=f"0 of {len(missing)} runs")
    for n, i in enumerate(missing, start=1):
        run = plan[i]
        title = f"{run.label} · seed {run.seed}" + (f" · {run.shots} shots" if run.shots else "")
        with st.status(title, expanded=True) as box:
            bar = st.progress(0.0, text="computing the layer weights…")
            note = st.empty()

            def progress(epoch: int, total: int, stats: dict, bar: Any = bar) -> None:
                bar.progress(epoch / max(total, 1), text=f"epoch {epoch}/{total} · loss {stats['train_loss']:.3f}"
                             f" · val acc {stats['val_acc']:.1%}")

            ok = False
            with guard(f"Run {title}"):
                out = api.run(run.cfg, store(), recipe_, progress, status=note.caption)
                results[i], ok = out, True
            if ok and out.get("status") == "diverged":  # a result (stored as such): go on with the other runs
                box.update(label=f"{title}: diverged at epoch {out['diverged_epoch']}", state="error")
            else:
                box.update(label=f"{title}: final {out['test_acc']:.1%} in {out['seconds']:.1f}s" if ok
                           else f"{title}: failed", state="complete" if ok else "error", expanded=not ok)
        overall.progress(n / len(missing), text=f"{n} of {len(missing)} runs")
        if not ok:
            return False
    return True


# ----------------------------------------------------------------------------- output

def colours(labels: Sequence[str]) -> dict[str, str]:
    """A fixed colour per method label, so a method looks the same in every chart of a page."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(dict.fromkeys(labels))}


def slug(name: str) -> str:
    """A file- and key-safe version of a chart or table name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


def show_figure(fig: go.Figure, name: str) -> None:
    """The chart, plus an HTML download (PNG comes from the camera icon in the chart's toolbar)."""
    name = slug(name)
    st.plotly_chart(fig, key=f"chart.{name}", config={
        "displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": name, "scale": 2}})
    st.download_button("HTML", data=lambda: fig.to_html(include_plotlyjs=True), file_name=f"{name}.html",
                       mime="text/html", key=f"html.{name}", on_click="ignore", icon=":material/download:",
                       help="The interactive chart as one HTML file. For a PNG, use the camera icon in the "
                            "chart's toolbar (no server-side image export is installed).")


def show_extras(label: str, extras: dict[str, Any]) -> None:
    """What a method reports beside its weights: lists of records as tables, the rest as JSON."""
    tables = {k: v for k, v in extras.items() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)}
    with st.expander(f"Details from {label}"):
        for key, records in tables.items():
            st.caption(key)
            show_table(pd.DataFrame(records), f"{label}-{key}")
        rest = {k: v for k, v in extras.items() if k not in tables}
        if rest:
            st.json(rest, expanded=False)


def show_table(frame: pd.DataFrame | Styler, name: str, **kwargs: Any) -> None:
    """The table (a DataFrame, or a Styler for highlights) with a CSV download of its values."""
    name = slug(name)
    st.dataframe(frame, hide_index=True, **kwargs)
    data = frame.data if isinstance(frame, Styler) else frame
    st.download_button("CSV", data=data.to_csv(index=False), file_name=f"{name}.csv", mime="text/csv",
                       key=f"csv.{name}", on_click="ignore", icon=":material/download:")
