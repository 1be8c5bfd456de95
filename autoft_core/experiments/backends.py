"""Where runs execute: in this process, in N spawned worker processes, or as Ray tasks.

Every backend runs *resolved* configs and yields each one's record as it finishes; the driver alone
writes the result store (one writer, and Ray nodes need not see the store's file). Only `execute`
crosses process boundaries, so it is a plain top-level function.
"""
from __future__ import annotations

import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..config import ENGINE_ROOT, RunConfig, code_version
from ..cores import cpu_count
from ..errors import AutoFTError
from ..paths import DataPaths, cache_dir
from ..store import ResultStore

if TYPE_CHECKING:  # process pools load only when a sweep spawns workers (a warm sweep never does)
    from concurrent.futures import Future

    from ..finetune import Progress

Outcome = tuple[RunConfig, "dict[str, Any] | BaseException"]


class Backend(Protocol):
    """Runs resolved configs, yielding (config, record or the exception it raised) as each finishes."""

    def run(self, configs: Sequence[RunConfig]) -> Iterator[Outcome]:
        """Run `configs`, yielding each one's outcome as it finishes (in any order)."""

    def close(self, abort: bool = False) -> None:
        """Release the workers; `abort` (an interrupt) stops the runs in flight instead of waiting for them."""


def execute(cfg: RunConfig, paths: DataPaths, device: str | None, threads: int | None,
            progress: Progress | None = None, status: Callable[[str], None] | None = None) -> dict[str, Any]:
    """One run computed in a scratch store (run_experiment always writes one): its answer (record, key)
    and the code version this worker hashed, which differs from the driver's if files changed meanwhile.
    `threads` pins the run's intra-op threads (None: the CPU thread policy of device.py decides); `progress`
    and `status` (in-process callers only) see its epochs and notes."""
    from ..device import pinned_threads
    from ..experiment import run_experiment

    with pinned_threads(threads), tempfile.TemporaryDirectory(prefix="autoft-run-") as scratch:
        answer = run_experiment(cfg, ResultStore(Path(scratch) / "run.sqlite"), paths, device, progress, status)
    return {**answer, "code_version": code_version()}


class LocalBackend:
    """Runs one after another in this process (the task data stays cached between runs)."""

    def __init__(self, paths: DataPaths, device: str | None, threads: int | None) -> None:
        self.paths, self.device, self.threads = paths, device, threads

    def run(self, configs: Sequence[RunConfig]) -> Iterator[Outcome]:
        for cfg in configs:
            try:
                yield cfg, execute(cfg, self.paths, self.device, self.threads)
            except Exception as exc:  # one failed run must not stop the sweep; the driver reports it
                yield cfg, exc

    def close(self, abort: bool = False) -> None:
        """Nothing to release."""


def exit_with_parent() -> None:
    """A pool worker's initializer: the worker exits when the process that started it dies (after a kill -9
    of a sweep its idle workers would otherwise live on, holding the sweep's output pipes)."""
    from multiprocessing import parent_process
    from multiprocessing.connection import wait

    parent = parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])  # ready once the parent is gone
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


class ProcessBackend:
    """`max_parallel` spawned worker processes, each pinned to its share of the cores as torch threads (at
    least one), so that the workers never oversubscribe the machine."""

    def __init__(self, paths: DataPaths, device: str | None, max_parallel: int, threads: int | None) -> None:
        self.paths, self.device = paths, device
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        self.threads = threads or max(1, cpu_count() // max_parallel)
        self.pool = ProcessPoolExecutor(max_workers=max_parallel, mp_context=get_context("spawn"),
                                        initializer=exit_with_parent)
        self.max_parallel = max_parallel

    def run(self, configs: Sequence[RunConfig]) -> Iterator[Outcome]:
        from concurrent.futures import FIRST_COMPLETED, wait

        queue = iter(configs)
        running: dict[Future, RunConfig] = {}
        while True:  # at most 2 × workers queued: an interrupt leaves little to cancel
            for cfg in queue:
                running[self.pool.submit(execute, cfg, self.paths, self.device, self.threads)] = cfg
                if len(running) >= 2 * self.max_parallel:
                    break
            if not running:
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                cfg = running.pop(future)
                error = future.exception()
                yield cfg, error if error is not None else future.result()

    def close(self, abort: bool = False) -> None:
        if abort:  # ProcessPoolExecutor.terminate_workers() only exists from Python 3.14
            for worker in list((self.pool._processes or {}).values()):
                worker.terminate()
        self.pool.shutdown(wait=not abort, cancel_futures=True)


class RayBackend:
    """Ray tasks on an existing cluster (`address`) or on a local instance started here."""

    def __init__(self, paths: DataPaths, device: str | None, address: str | None, max_parallel: int | None,
                 cpus_per_run: float, gpus_per_run: float) -> None:
        import logging

        try:
            import ray
        except ImportError as exc:
            raise AutoFTError("the ray backend needs the ray package, which is not installed here: install it "
                              "(pip install -r requirements.txt) or use --backend local") from exc
        self.ray, self.paths, self.device = ray, paths, device
        self.started = not ray.is_initialized()
        sigterm = signal.getsignal(signal.SIGTERM)
        if self.started and address:  # nodes get this very engine code (same keys) and look for the pretrained
            # models in this cache folder (same machine or shared file system; else they pretrain their own there)
            ray.init(address=address, logging_level=logging.WARNING,
                     runtime_env={"py_modules": [str(ENGINE_ROOT)], "env_vars": {"AUTOFT_CACHE": str(cache_dir())}})
        elif self.started:
            slots = max_parallel or max(1, int(cpu_count() // cpus_per_run))
            ray.init(num_cpus=max(1, round(slots * cpus_per_run)), include_dashboard=False,
                     object_store_memory=256 * 2**20, logging_level=logging.WARNING)
        if sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, sigterm)  # ray.init installs one that aborts: keep the caller's
        self.limit = max_parallel
        self.threads = max(1, int(cpus_per_run))
        self.task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run)(execute)

    def run(self, configs: Sequence[RunConfig]) -> Iterator[Outcome]:
        queue = iter(configs)
        running: dict[Any, RunConfig] = {}
        limit = self.limit or len(configs)
        while True:
            for cfg in queue:
                running[self.task.remote(cfg, self.paths, self.device, self.threads)] = cfg
                if len(running) >= limit:
                    break
            if not running:
                return
            (ref,), _ = self.ray.wait(list(running), num_returns=1)
            cfg = running.pop(ref)
            try:
                yield cfg, self.ray.get(ref)
            except Exception as exc:  # RayTaskError wraps the worker's exception
                yield cfg, exc

    def close(self, abort: bool = False) -> None:
        """Disconnecting ends this job, so its tasks still running stop either way."""
        if self.started:
            self.ray.shutdown()
