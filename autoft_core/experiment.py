"""One experiment = one config: build the task, compute a method's weights, fine-tune, store.

`lookup` is the one answer to "is this run stored?": the request's own key first (a cache hit needs no
resolving, so no torch), then the resolved config's key, which is then aliased to the request. The CLI,
the sweep planner, the dashboard and `run_experiment` all go through it.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .config import RunConfig
from .core.recipe import SEED_BOUNDS
from .methods import resolve_params
from .paths import DataPaths
from .setups import Setup, get_setup
from .store import ResultStore

if TYPE_CHECKING:  # the engine (torch) loads only when a run is computed: a look-up stays torch-free
    from .core.data import TaskData
    from .finetune import Progress
    from .layers import Layer
    from .methods import MethodContext


def resolve(cfg: RunConfig, paths: DataPaths | None = None) -> RunConfig:
    """Defaults filled in and every field validated (BadArgumentError names the valid choices); loads nothing."""
    setup = get_setup(cfg.setup, paths)
    recipe = cfg.recipe if cfg.recipe is not None else setup.recipe
    spec = setup.check(replace(cfg, recipe=recipe).task_spec())
    return replace(cfg, corruption=spec.corruption, severity=spec.severity,
                   params=resolve_params(cfg.method, cfg.params), recipe=recipe,
                   seed=SEED_BOUNDS.parse("seed", cfg.seed))


@dataclass(frozen=True)
class Lookup:
    """Where a request stands in the store: its resolved config and key, and the record when stored."""

    cfg: RunConfig
    key: str
    record: dict | None

    @property
    def stored(self) -> bool:
        return self.record is not None


def lookup(request: RunConfig, store: ResultStore, paths: DataPaths | None = None) -> Lookup:
    """The stored run a request stands for, if any (by the request's key, then the resolved key, which
    then gets the request as an alias so the next look-up needs no resolving)."""
    found = store.get(request.key())
    if found is not None:
        return Lookup(request, request.key(), found)
    cfg = resolve(request, paths)
    key = cfg.key()
    found = store.get(key)
    if found is not None:
        store.alias(request.key(), key)
    return Lookup(cfg, key, found)


@lru_cache(maxsize=32)
def _cached_task(setup_name: str, paths: DataPaths, spec: Any) -> TaskData:
    return get_setup(setup_name, paths).task(spec)


def load_task(cfg: RunConfig, paths: DataPaths | None = None) -> tuple[Setup, TaskData]:
    """The setup and its task data for a resolved config (kept in memory between runs)."""
    setup = get_setup(cfg.setup, paths)
    return setup, _cached_task(cfg.setup, setup.paths, cfg.task_spec())


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


def compute_weights(cfg: RunConfig, paths: DataPaths | None = None, device: str | None = None,
                    status: Callable[[str], None] | None = None) -> dict[str, Any]:
    """A method's per-layer scores and multipliers for one task (no fine-tuning unless the method needs it)."""
    import torch

    from .device import thread_policy
    from .methods import get_method

    cfg = resolve(cfg, paths)
    torch.manual_seed(cfg.seed)
    ctx, layers = _context(cfg, paths, device, None, status)
    started = time.perf_counter()
    with thread_policy(ctx.model, ctx.device):
        chosen = get_method(cfg.method).weights(ctx)
    return {"method": cfg.method, "params": cfg.params, "layers": [layer.name for layer in layers],
            "scores": chosen.scores, "weights": chosen.weights, "extras": chosen.extras,
            "seconds": time.perf_counter() - started}


def compute_run(cfg: RunConfig, paths: DataPaths | None = None, device: str | None = None,
                progress: Progress | None = None, status: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Weights + fine-tuning + evaluation of a resolved config: the record the store keeps (not stored here)."""
    import torch

    from .device import thread_policy
    from .methods import get_method

    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    ctx, layers = _context(cfg, paths, device, progress, status)
    with thread_policy(ctx.model, ctx.device):
        chosen, result = get_method(cfg.method).run(ctx)
    return {"method": cfg.method, "params": cfg.params, "layers": [layer.name for layer in layers],
            "scores": chosen.scores, "weights": chosen.weights, "extras": chosen.extras,
            **result.to_dict(), "seconds": time.perf_counter() - started, "device": str(ctx.device)}


def run_experiment(cfg: RunConfig, store: ResultStore | None = None, paths: DataPaths | None = None,
                   device: str | None = None, progress: Progress | None = None,
                   status: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Weights + fine-tuning + evaluation for `cfg`, from the store when already computed."""
    store = store or ResultStore()
    found = lookup(cfg, store, paths)
    if found.stored:
        return {**found.record, "cached": True, "key": found.key}
    record = compute_run(found.cfg, paths, device, progress, status)
    store.put(found.key, found.cfg.to_dict(), record, aliases=(cfg.key(),))
    return {**record, "cached": False, "key": found.key}
