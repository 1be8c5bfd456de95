"""Runs started from the dashboard: a background thread drives the sweep engine (`run_sweep`: one store
look-up per request, finished runs stored as each ends) on an in-process backend that reports progress.

The page polls a `Job` for what to show: the one-off work (preparing the pretrained source models,
trained once on first use), the finished runs, the current run's epoch. Cancel sets a flag; the
run's progress callback raises `RunCancelled` when the run next reports an epoch (at the end of the
current epoch; one epoch later when evaluation runs beside training, finetune.py), which the sweep
engine handles as it handles Ctrl-C (stops, keeps every finished run), and the job ends "cancelled".
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoft_core.config import RunConfig
from autoft_core.errors import AutoFTError
from autoft_core.experiments.backends import execute
from autoft_core.experiments.runner import describe, run_sweep
from autoft_core.paths import DataPaths, cache_dir
from autoft_core.setups import get_setup
from autoft_core.store import ResultStore

RUNNING, DONE, CANCELLED, FAILED = "running", "done", "cancelled", "failed"


class RunCancelled(KeyboardInterrupt):
    """The user pressed Cancel: raised at the end of an epoch, handled by the sweep engine like Ctrl-C."""


@dataclass
class Job:
    """A batch of runs in progress: what the run panel shows while it polls."""

    title: str
    requests: int
    state: str = RUNNING
    to_run: int = 0  # runs the store lacked (known once the sweep engine has looked them up)
    finished: list[str] = field(default_factory=list)  # one line per finished run
    one_off: list[str] = field(default_factory=list)  # one line per source model prepared
    current: str = ""
    epoch: int = 0
    epochs: int = 0
    note: str = ""
    error: str = ""
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self.state == RUNNING

    def cancel(self) -> None:
        """Stop after the current epoch; finished runs stay in the store."""
        self.cancel_requested.set()

    def progress(self, epoch: int, total: int, stats: dict) -> None:
        """The engine's per-epoch callback: record the epoch, then stop here if Cancel was pressed."""
        self.epoch, self.epochs = epoch, total
        self.note = f"loss {stats['train_loss']:.3f} · validation {stats['val_acc']:.1%}"
        if self.cancel_requested.is_set():
            raise RunCancelled

    def status(self, note: str) -> None:
        self.note = note

    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def wait(self, timeout: float | None = None) -> None:
        """Block until the thread ends (tests, scripts)."""
        if self.thread is not None:
            self.thread.join(timeout)


def _cache_files() -> set[Path]:
    """The cache's files, less the stamps of kept files checked (kept_tensors): checking a file trains nothing."""
    from autoft_core.kept_tensors import SIDECAR

    return {p for p in cache_dir().rglob("*") if not p.name.endswith(SIDECAR)}


class DashboardBackend:
    """The sweep engine's Backend for the dashboard: runs one after another in this thread, each with the
    job's progress callback; first it prepares every source model the runs need, reporting the one-off
    pretraining that a first use triggers."""

    def __init__(self, job: Job, paths: DataPaths, device: str | None) -> None:
        self.job, self.paths, self.device = job, paths, device

    def _prepare(self, configs: Sequence[RunConfig]) -> None:
        for setup, shift in dict.fromkeys((c.setup, c.shift) for c in configs):
            before, started = _cache_files(), time.monotonic()
            self.job.current = f"Preparing the {setup} source model for the {shift} shift (trained once on first use)"
            get_setup(setup, self.paths).source_model(shift)
            if _cache_files() - before:
                seconds = time.monotonic() - started
                self.job.one_off.append(f"Pretrained the {setup} source model for the {shift} shift in "
                                        f"{seconds:.0f} s: one-off, it is cached for every later run.")
            if self.job.cancel_requested.is_set():
                raise RunCancelled

    def run(self, configs: Sequence[RunConfig]) -> Iterator[tuple[RunConfig, Any]]:
        self.job.to_run = len(configs)
        self._prepare(configs)
        for cfg in configs:
            self.job.current, self.job.epoch, self.job.epochs, self.job.note = describe(cfg), 0, 0, "starting…"
            try:
                answer = execute(cfg, self.paths, self.device, None, self.job.progress, self.job.status)
            except Exception as exc:  # the sweep engine records it and goes on with the others
                yield cfg, exc
                continue
            outcome = (f"diverged at epoch {answer.get('diverged_epoch')}" if answer.get("status") == "diverged"
                       else f"{answer['test_acc']:.1%}")
            self.job.finished.append(f"{describe(cfg)}: {outcome} in {answer['seconds']:.1f} s")
            yield cfg, answer

    def close(self, abort: bool = False) -> None:
        """Nothing to release: the runs ran in this thread."""


def _work(job: Job, configs: Sequence[RunConfig], store: ResultStore, paths: DataPaths, device: str | None) -> None:
    try:
        run_sweep(configs, store, lambda: DashboardBackend(job, paths, device), paths, title="dashboard")
        job.state = DONE
    except RunCancelled:
        job.state = CANCELLED
    except AutoFTError as exc:
        job.state, job.error = FAILED, str(exc)
    except Exception as exc:  # the page shows one line; the sweep log has the traceback
        job.state, job.error = FAILED, f"{type(exc).__name__}: {exc}"
    finally:
        job.current, job.ended = "", time.monotonic()


def start(title: str, configs: Sequence[RunConfig], store: ResultStore, paths: DataPaths, device: str | None) -> Job:
    """Start running `configs` (those the store lacks) in a background thread; returns at once."""
    job = Job(title, len(configs))
    job.thread = threading.Thread(target=_work, args=(job, list(configs), store, paths, device), daemon=True,
                                  name=f"autoft-dashboard-{title}")
    job.thread.start()
    return job
