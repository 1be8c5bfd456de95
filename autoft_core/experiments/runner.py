"""The sweep driver: resolve every request, answer what the store already holds, dispatch the rest.

Cached runs never reach a backend (a finished sweep re-run starts no worker at all); each finished run
is written to the store as soon as it comes back, so an interrupted sweep resumes where it stopped. The
store is checked writable before anything is planned or run. A diverged run is a result like any other
(stored, counted, the sweep goes on); a failed one is recorded as failed and retried on the next call.
"""
from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from ..config import RunConfig
from ..errors import AutoFTError
from ..paths import DataPaths
from ..runs import lookup_many
from ..store import ResultStore
from .backends import Backend

_TRANSIENT = ("cached", "key", "code_version")  # a worker's answer fields that are not part of the record


@dataclass
class Job:
    """One distinct resolved run and the request keys that should find it."""

    cfg: RunConfig
    requests: list[str] = field(default_factory=list)


@dataclass
class SweepReport:
    """What a sweep did: runs planned, found in the store, run, and those that failed or diverged."""

    total: int
    cached: int
    ran: int = 0
    failed: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    other_versions: set[str] = field(default_factory=set)  # code versions workers ran that the driver did not
    log_path: Path | None = None


class SweepFailed(AutoFTError):
    """Some runs failed (the others are stored); the message lists them and where the tracebacks are."""


def describe(cfg: RunConfig) -> str:
    """A short human-readable name of a run for logs and progress lines."""
    task = f"{cfg.shift}/{cfg.corruption}@{cfg.severity}" if cfg.shift == "input" else cfg.shift
    params = "".join(f" {k}={v}" for k, v in sorted(cfg.params.items()))
    recipe = f" shots={cfg.recipe.shots} epochs={cfg.recipe.epochs} lr={cfg.recipe.lr:g}" if cfg.recipe else ""
    return f"{cfg.setup} {task} {cfg.method}{params} seed={cfg.seed}{recipe}"


def plan_jobs(requests: Sequence[RunConfig], store: ResultStore,
              paths: DataPaths | None) -> tuple[dict[str, Job], dict[str, tuple[RunConfig, dict]]]:
    """(runs still to compute, runs already stored) by key, through `runs.lookup_many`; every request
    missing from the store is resolved (so validated) before anything runs."""
    jobs: dict[str, Job] = {}
    cached: dict[str, tuple[RunConfig, dict]] = {}
    for request, found in zip(requests, lookup_many(requests, store, paths)):
        if found.stored:
            cached[found.key] = (found.cfg, found.record)
        elif found.key in jobs:
            jobs[found.key].requests.append(request.key())
        else:
            jobs[found.key] = Job(found.cfg, [request.key()])
    return jobs, cached


def _line(cfg: RunConfig, record: dict[str, Any], cached: bool) -> str:
    if record.get("status") == "diverged":
        outcome = f"DIVERGED at epoch {record['diverged_epoch']}"
    else:
        outcome = f"test_acc={record['test_acc']:.4f}  best_val_test_acc={record['best_val_test_acc']:.4f}"
    return f"{'cached' if cached else 'ran':<6} {record['seconds']:7.1f}s  {outcome}  {describe(cfg)}  key={cfg.key()}"


def _log(log: TextIO, text: str) -> None:
    log.write(f"{datetime.now():%Y-%m-%d %H:%M:%S} {text}\n")
    log.flush()


def run_sweep(requests: Sequence[RunConfig], store: ResultStore, make_backend: Callable[[], Backend],
              paths: DataPaths | None = None, log_dir: Path | None = None, title: str = "sweep") -> SweepReport:
    """Run every request not yet in `store` on a backend made only if something is missing."""
    jobs, cached = plan_jobs(requests, store, paths)
    if jobs:  # before any computing: a finished run must have somewhere to go (all stored: read-only will do)
        store.check_writable()
    report = SweepReport(total=len(jobs) + len(cached), cached=len(cached))
    log_dir = log_dir or store.path.parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    report.log_path = log_dir / f"{title}-{datetime.now():%Y%m%d-%H%M%S-%f}.log"
    with report.log_path.open("a") as log, \
            tqdm(total=report.total, initial=report.cached, desc=title, unit="run", file=sys.stderr,
                 disable=None) as bar:
        _log(log, f"{' '.join(sys.argv)}: {report.total} runs, {report.cached} in the store {store.path}, "
                  f"{len(jobs)} to run")
        for cfg, record in cached.values():
            _log(log, _line(cfg, record, cached=True))
            if record.get("status") == "diverged":
                report.diverged.append(describe(cfg))
        if not jobs:
            return report
        backend = make_backend()
        try:
            for cfg, outcome in backend.run([job.cfg for job in jobs.values()]):
                _finish(cfg, outcome, jobs[cfg.key()], store, report, log, bar)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see commands): stop the workers, keep what is stored
            _log(log, f"interrupted after {report.ran} runs; re-run the same command to resume")
            backend.close(abort=True)
            raise
        except Exception as exc:  # the backend broke (a worker process killed, Ray lost) or the store did
            _log(log, "stopped\n" + "".join(traceback.format_exception(exc)))
            backend.close(abort=True)
            reason = str(exc) if isinstance(exc, AutoFTError) else repr(exc)
            raise SweepFailed(f"the {title} stopped after {report.ran} runs: {reason}; traceback in "
                              f"{report.log_path}; re-run the same command to resume") from exc
        backend.close()
    if report.failed:
        raise SweepFailed(f"{len(report.failed)} of {len(jobs)} runs failed ({', '.join(report.failed[:3])}"
                          f"{', ...' if len(report.failed) > 3 else ''}); tracebacks in {report.log_path}; "
                          f"the other runs are stored, re-run the same command to retry only the failed ones")
    return report


def _finish(cfg: RunConfig, outcome: dict[str, Any] | BaseException, job: Job, store: ResultStore,
            report: SweepReport, log: TextIO, bar: tqdm) -> None:
    """Store one finished run (or record its failure), log it and advance the progress bar."""
    bar.update(1)
    if isinstance(outcome, BaseException):
        report.failed.append(describe(cfg))
        store.put_failed(cfg.key(), cfg.to_dict(), f"{type(outcome).__name__}: {outcome}")
        _log(log, f"FAILED {describe(cfg)}\n" + "".join(traceback.format_exception(outcome)))
        bar.write(f"FAILED {describe(cfg)}: {outcome}", file=sys.stderr)
        return
    if outcome.get("status") == "diverged":
        report.diverged.append(describe(cfg))
    record = {k: v for k, v in outcome.items() if k not in _TRANSIENT}
    line = _line(cfg, record, cached=False)
    if outcome["key"] == cfg.key():
        store.put(cfg.key(), cfg.to_dict(), record, aliases=tuple(job.requests))
    else:  # the worker hashed other engine files or runs on another CPU: keep its run, labelled as made
        store.put(outcome["key"], {**cfg.to_dict(), "code_version": outcome["code_version"]}, record)
        report.other_versions.add(outcome["code_version"])
        line += f"  (stored under code version {outcome['code_version']}: engine files changed, or another CPU)"
    report.ran += 1
    _log(log, line)
    bar.write(line, file=sys.stderr)
