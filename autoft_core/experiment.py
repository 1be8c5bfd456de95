"""One experiment = one config: build the task, compute a method's weights, fine-tune, store.

Whether a run is already stored is answered by `runs.lookup` alone (the CLI, the sweep planner, the
dashboard and `run_experiment` all go through it). Torch loads only when a run is computed.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .config import RunConfig
from .core.recipe import MAX_SHOTS
from .cpu_isa import cpu_model
from .paths import DataPaths
from .runs import lookup, resolve
from .setups import Setup, get_setup
from .store import ResultStore

if TYPE_CHECKING:  # the engine (torch) loads only when a run is computed: a look-up stays torch-free
    from .core.data import TaskData
    from .finetune import Progress
    from .layers import Layer
    from .methods import LayerWeights, MethodContext

__all__ = ["compute_run", "compute_weights", "load_task", "lookup", "resolve", "run_experiment"]


@lru_cache(maxsize=32)
def _cached_task(setup_name: str, paths: DataPaths, spec: Any) -> TaskData:
    return get_setup(setup_name, paths).task(spec)


def load_task(cfg: RunConfig, paths: DataPaths | None = None) -> tuple[Setup, TaskData]:
    """The setup and its task data for a resolved config (kept in memory between runs)."""
    setup = get_setup(cfg.setup, paths)
    return setup, _cached_task(cfg.setup, setup.paths, cfg.task_spec())


def pool_counts(cfg: RunConfig, paths: DataPaths | None = None, keep: bool = True) -> list[int]:
    """Images per class of the training pool a resolved config's task draws its shots from: as the setup
    declares them (`Setup.pool_counts`), else counted in the task built with every shot, kept for the runs
    as `load_task` keeps it unless `keep` is False (a planner counting many tasks holds none of them)."""
    cfg = replace(cfg, recipe=replace(cfg.recipe, shots=MAX_SHOTS))
    setup = get_setup(cfg.setup, paths)
    spec = setup.check(cfg.task_spec())
    declared = setup.pool_counts(spec)
    if declared is not None:
        return declared
    import torch

    data = load_task(cfg, paths)[1] if keep else setup.task(spec)
    return torch.bincount(data.train.y, minlength=data.num_classes).tolist()


def _context(cfg: RunConfig, paths: DataPaths | None, device: str | None, progress: Progress | None,
             status: Callable[[str], None] | None) -> tuple[MethodContext, list[Layer]]:
    from .device import prepare_model, resolve_device
    from .layers import partition
    from .methods import MethodContext

    setup, data = load_task(cfg, paths)
    torch_device = resolve_device(device)
    model = prepare_model(setup.source_model(cfg.shift), torch_device)
    layers = partition(model, cfg.recipe.granularity)
    ctx = MethodContext(model=model, layers=layers, data=data.to(torch_device), params=dict(cfg.params),
                        recipe=cfg.recipe, seed=cfg.seed, device=torch_device, progress=progress, status=status)
    return ctx, layers


def _threads(cfg: RunConfig, paths: DataPaths | None, ctx: MethodContext) -> contextlib.AbstractContextManager:
    """The setup's fixed thread count when it promises the same numbers whatever the core count
    (threads.py), else the CPU thread policy (device.py: one thread for a small model, so a busy machine
    does not collapse)."""
    from .device import run_threads
    from .threads import fixed_cpu_threads

    fixed = get_setup(cfg.setup, paths).cpu_threads
    return fixed_cpu_threads(fixed if fixed is not None else run_threads(ctx.model, ctx.device))


def compute_weights(cfg: RunConfig, paths: DataPaths | None = None, device: str | None = None,
                    status: Callable[[str], None] | None = None) -> dict[str, Any]:
    """A method's per-layer scores and multipliers for one task (no fine-tuning unless the method needs it)."""
    import torch

    from .methods import get_method

    cfg = resolve(cfg, paths)
    torch.manual_seed(cfg.seed)
    ctx, layers = _context(cfg, paths, device, None, status)
    started = time.perf_counter()
    with _threads(cfg, paths, ctx):
        chosen = get_method(cfg.method).weights(ctx)
    return {**_weights_record(cfg, layers, chosen), "seconds": time.perf_counter() - started}


def _weights_record(cfg: RunConfig, layers: list[Layer], chosen: LayerWeights) -> dict[str, Any]:
    """What a method chose, as `compute_weights` answers it and a stored run begins."""
    return {"method": cfg.method, "params": cfg.params, "layers": [layer.name for layer in layers],
            "scores": chosen.scores, "weights": chosen.weights, "extras": chosen.extras}


def compute_run(cfg: RunConfig, paths: DataPaths | None = None, device: str | None = None,
                progress: Progress | None = None, status: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Weights + fine-tuning + evaluation of a resolved config: the record the store keeps (not stored here)."""
    import torch

    from .methods import get_method

    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    ctx, layers = _context(cfg, paths, device, progress, status)
    with _threads(cfg, paths, ctx):
        chosen, result = get_method(cfg.method).run(ctx)
        threads = torch.get_num_threads()
    return {**_weights_record(cfg, layers, chosen), **result.to_dict(), "seconds": time.perf_counter() - started,
            "device": str(ctx.device),
            "effective_shots": len(ctx.data.train), "cpu_threads": threads,
            "cpu_kernels": torch.backends.cpu.get_cpu_capability(),  # capped at AVX2 on x86-64 (cpu_isa.py)
            "cpu": cpu_model()}


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
