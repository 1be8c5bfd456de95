"""One experiment = one config: build the task, compute a method's weights, fine-tune, store.

A run is keyed in the store by its resolved `RunConfig` and also by the request as given, so an
identical request is answered from the store without recomputation (and without resolving).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from typing import Any

import torch

from .config import RunConfig
from .data.task import TaskData
from .device import prepare_model, resolve_device
from .finetune import FinetuneConfig, Progress
from .errors import BadArgumentError
from .layers import GRANULARITIES, Layer, partition
from .methods import MethodContext, get_method, method_class
from .paths import DataPaths
from .setups import Setup, TaskSpec, get_setup
from .store import ResultStore
from .threads import fixed_cpu_threads

def resolve(cfg: RunConfig, paths: DataPaths | None = None) -> RunConfig:
    """Defaults filled in and every field validated (BadArgumentError names the valid choices)."""
    setup = get_setup(cfg.setup, paths)
    spec = setup.check(TaskSpec(cfg.shift, cfg.corruption, cfg.severity, cfg.shots, cfg.seed))
    if cfg.granularity not in GRANULARITIES:
        raise BadArgumentError("granularity", cfg.granularity, GRANULARITIES)
    d = setup.defaults
    resolved = replace(cfg, corruption=spec.corruption, severity=spec.severity, shots=spec.shots,
                       params=method_class(cfg.method).resolve_params(cfg.params),
                       epochs=d.epochs if cfg.epochs is None else cfg.epochs,
                       lr=d.lr if cfg.lr is None else cfg.lr,
                       batch_size=d.batch_size if cfg.batch_size is None else cfg.batch_size)
    finetune_config(resolved)  # validates epochs, lr, batch size, optimizer
    return resolved


def task_spec(cfg: RunConfig) -> TaskSpec:
    return TaskSpec(cfg.shift, cfg.corruption, cfg.severity, cfg.shots, cfg.seed)


def finetune_config(cfg: RunConfig, device: str | None = None) -> FinetuneConfig:
    return FinetuneConfig(epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, optimizer=cfg.optimizer,
                          weight_decay=cfg.weight_decay, train_bn_stats=cfg.train_bn_stats,
                          seed=cfg.seed, device=device)


@lru_cache(maxsize=32)
def _cached_task(setup_name: str, paths: DataPaths, spec: TaskSpec) -> TaskData:
    return get_setup(setup_name, paths).task(spec)


def load_task(cfg: RunConfig, paths: DataPaths | None = None) -> tuple[Setup, TaskData]:
    """The setup and its task data for a resolved config (kept in memory between runs)."""
    setup = get_setup(cfg.setup, paths)
    return setup, _cached_task(cfg.setup, setup.paths, task_spec(cfg))


def _context(cfg: RunConfig, paths: DataPaths | None, device: str | None, progress: Progress | None,
             status: Callable[[str], None] | None) -> tuple[MethodContext, list[Layer]]:
    setup, data = load_task(cfg, paths)
    torch_device = resolve_device(device)
    model = prepare_model(setup.source_model(cfg.shift), torch_device)
    layers = partition(model, cfg.granularity)
    ctx = MethodContext(model=model, layers=layers, data=data.to(torch_device), params=dict(cfg.params),
                        finetune_cfg=finetune_config(cfg, device), device=torch_device,
                        progress=progress, status=status)
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


def run_experiment(cfg: RunConfig, store: ResultStore | None = None, paths: DataPaths | None = None,
                   device: str | None = None, progress: Progress | None = None,
                   status: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Weights + fine-tuning + evaluation for `cfg`, from the store when already computed."""
    store = store or ResultStore()
    request = cfg.key()
    found = store.get(request)
    if found is not None:
        return {**found, "cached": True, "key": request}
    cfg = resolve(cfg, paths)
    key = cfg.key()
    found = store.get(key)
    if found is not None:
        store.alias(request, key)
        return {**found, "cached": True, "key": key}
    store.check_writable()  # before any computing: a finished run must have somewhere to go
    started = time.perf_counter()
    with fixed_cpu_threads(get_setup(cfg.setup, paths).cpu_threads):
        torch.manual_seed(cfg.seed)
        ctx, layers = _context(cfg, paths, device, progress, status)
        chosen, result = get_method(cfg.method).run(ctx)
        threads = torch.get_num_threads()
    record = {"method": cfg.method, "params": cfg.params, "layers": [layer.name for layer in layers],
              "scores": chosen.scores, "weights": chosen.weights, "extras": chosen.extras,
              **result.to_dict(), "seconds": time.perf_counter() - started, "device": str(ctx.device),
              "effective_shots": len(ctx.data.train), "cpu_threads": threads}
    store.put(key, cfg.to_dict(), record, aliases=(request,))
    return {**record, "cached": False, "key": key}
