"""One experiment = one config: build the task, compute a method's weights, fine-tune, store.

Whether a run is already stored is answered by `runs.lookup` alone (the CLI, the sweep planner, the
dashboard and `run_experiment` all go through it).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import torch

from .config import RunConfig
from .core.data import TaskData
from .device import prepare_model, resolve_device
from .finetune import Progress
from .layers import Layer, partition
from .methods import MethodContext, get_method
from .paths import DataPaths
from .runs import lookup, resolve
from .setups import Setup, get_setup
from .store import ResultStore
from .threads import fixed_cpu_threads


@lru_cache(maxsize=32)
def _cached_task(setup_name: str, paths: DataPaths, spec: Any) -> TaskData:
    return get_setup(setup_name, paths).task(spec)


def load_task(cfg: RunConfig, paths: DataPaths | None = None) -> tuple[Setup, TaskData]:
    """The setup and its task data for a resolved config (kept in memory between runs)."""
    setup = get_setup(cfg.setup, paths)
    return setup, _cached_task(cfg.setup, setup.paths, cfg.task_spec())


def _context(cfg: RunConfig, paths: DataPaths | None, device: str | None, progress: Progress | None,
             status: Callable[[str], None] | None) -> tuple[MethodContext, list[Layer]]:
    setup, data = load_task(cfg, paths)
    torch_device = resolve_device(device)
    model = prepare_model(setup.source_model(cfg.shift), torch_device)
    layers = partition(model, cfg.recipe.granularity)
    ctx = MethodContext(model=model, layers=layers, data=data.to(torch_device), params=dict(cfg.params),
                        recipe=cfg.recipe, seed=cfg.seed, device=torch_device, progress=progress, status=status)
    return ctx, layers


def compute_weights(cfg: RunConfig, paths: DataPaths | None = None, device: str | None = None,
                    status: Callable[[str], None] | None = None) -> dict[str, Any]:
    """A method's per-layer scores and multipliers for one task (no fine-tuning unless the method needs it)."""
    cfg = resolve(cfg, paths)
    with fixed_cpu_threads(get_setup(cfg.setup, paths).cpu_threads):
        torch.manual_seed(cfg.seed)
        ctx, layers = _context(cfg, paths, device, None, status)
        started = time.perf_counter()
        chosen = get_method(cfg.method).weights(ctx)
    return {"method": cfg.method, "params": cfg.params, "layers": [layer.name for layer in layers],
            "scores": chosen.scores, "weights": chosen.weights, "extras": chosen.extras,
            "seconds": time.perf_counter() - started}


def compute_run(cfg: RunConfig, paths: DataPaths | None = None, device: str | None = None,
                progress: Progress | None = None, status: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Weights + fine-tuning + evaluation of a resolved config: the record the store keeps (not stored here)."""
    started = time.perf_counter()
    with fixed_cpu_threads(get_setup(cfg.setup, paths).cpu_threads):  # the thread count changes the numbers
        torch.manual_seed(cfg.seed)
        ctx, layers = _context(cfg, paths, device, progress, status)
        chosen, result = get_method(cfg.method).run(ctx)
        threads = torch.get_num_threads()
    return {"method": cfg.method, "params": cfg.params, "layers": [layer.name for layer in layers],
            "scores": chosen.scores, "weights": chosen.weights, "extras": chosen.extras,
            **result.to_dict(), "seconds": time.perf_counter() - started, "device": str(ctx.device),
            "effective_shots": len(ctx.data.train), "cpu_threads": threads}


def run_experiment(cfg: RunConfig, store: ResultStore | None = None, paths: DataPaths | None = None,
                   device: str | None = None, progress: Progress | None = None,
                   status: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Weights + fine-tuning + evaluation for `cfg`, from the store when already computed."""
    store = store or ResultStore()
    found = lookup(cfg, store, paths)
    if found.stored:
        return {**found.record, "cached": True, "key": found.key}
    store.check_writable()  # before any computing: a finished run must have somewhere to go
    record = compute_run(found.cfg, paths, device, progress, status)
    store.put(found.key, found.cfg.to_dict(), record, aliases=(cfg.key(),))
    return {**record, "cached": False, "key": found.key}
