"""Resolving a request (defaults filled in, everything validated, nothing loaded) and the one answer to
"is this run stored?", shared by the CLI, the sweep planner, the dashboard and
`experiment.run_experiment`: the request's own key first (a hit needs no resolving, so no torch), then
the resolved config's key, which is then aliased to the request so the next look-up is the fast one."""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, replace

from .config import RunConfig
from .core.recipe import SEED_BOUNDS
from .errors import StoreError
from .paths import DataPaths
from .setups import get_setup
from .store import ResultStore


def resolve(cfg: RunConfig, paths: DataPaths | None = None) -> RunConfig:
    """Defaults filled in and every field validated (BadArgumentError names the valid choices); loads nothing."""
    from .methods import resolve_params  # the method catalogue: torch-free

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
        """Whether the store holds this run's record."""
        return self.record is not None


def lookup(request: RunConfig, store: ResultStore, paths: DataPaths | None = None) -> Lookup:
    """The stored run a request stands for, if any (by the request's key, then the resolved key, which
    then gets the request as an alias so the next look-up needs no resolving)."""
    return lookup_many([request], store, paths)[0]


def lookup_many(requests: Sequence[RunConfig], store: ResultStore, paths: DataPaths | None = None) -> list[Lookup]:
    """`lookup` of each request, in order, with one store query for the requests' own keys and one for the
    resolved keys of those not found by theirs."""
    asked = [request.key() for request in requests]
    found = store.get_many(asked)
    resolved = {i: resolve(request, paths) for i, (request, key) in enumerate(zip(requests, asked)) if key not in found}
    keys = {i: cfg.key() for i, cfg in resolved.items()}
    found_resolved = store.get_many(list(dict.fromkeys(keys.values()))) if keys else {}
    out = []
    for i, (request, key) in enumerate(zip(requests, asked)):
        if i not in resolved:
            out.append(Lookup(request, key, found[key]))
            continue
        record = found_resolved.get(keys[i])
        if record is not None:
            # the request finds the run at once next time; a store that cannot be written (read-only) only
            # loses that shortcut, the run is found by its resolved key all the same
            with suppress(StoreError):
                store.alias(key, keys[i])
        out.append(Lookup(resolved[i], keys[i], record))
    return out
