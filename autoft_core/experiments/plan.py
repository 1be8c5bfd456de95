"""Expanding a sweep, shot-scaling or hyper-parameter grid request into the `RunConfig`s it stands for.

Every list is validated against what is registered *now* (setups, shifts, corruptions, methods), so
"all" always means the current registry and a typo fails before any run starts.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from itertools import product
from typing import Any

from ..config import RunConfig
from ..core.recipe import MAX_SHOTS, SEED_BOUNDS, Recipe
from ..core.values import Bounds
from ..errors import AutoFTError, BadArgumentError
from ..paths import DataPaths
from ..setups import get_setup

ALL = "all"
DEFAULT_CORRUPTION = "gaussian_noise"  # shots / grid on the input shift without --corruption


def task_corruption(shift: str, corruption: str | None) -> str | None:
    """The corruption a single-task command uses: the given one, or DEFAULT_CORRUPTION on the input shift
    (RunConfig refuses one given for another shift)."""
    return corruption or (DEFAULT_CORRUPTION if shift == "input" else None)


def choose(what: str, text: str, valid: Sequence[str]) -> list[str]:
    """A comma list checked against `valid` ("all" = every valid choice), duplicates dropped, order kept."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise BadArgumentError(what, text, [*valid, ALL])
    if ALL in items:
        return list(valid)
    for item in items:
        if item not in valid:
            raise BadArgumentError(what, item, [*valid, ALL])
    return list(dict.fromkeys(items))


def numbers(what: str, text: str, bounds: Bounds) -> list[int]:
    """A comma list of whole numbers, each checked against `bounds`, duplicates dropped, order kept."""
    return list(dict.fromkeys(bounds.parse(what, item) for item in text.split(",")))


def _methods(text: str) -> list[str]:
    from ..methods import method_names  # imports torch: only when a plan is made

    return choose("method", text, method_names())


def _shifts(setup: str, text: str, paths: DataPaths | None) -> list[str]:
    return choose(f"shift for setup {setup}", text, get_setup(setup, paths).shifts)


def _corruptions(setup: str, text: str, paths: DataPaths | None) -> list[str]:
    return choose("corruption", text, get_setup(setup, paths).corruptions())


def sweep_configs(setup: str, shifts: str, corruptions: str, severity: int, methods: str, seeds: str,
                  recipe: Recipe, paths: DataPaths | None = None,
                  params: dict[str, Any] | None = None) -> list[RunConfig]:
    """Methods × shifts (× corruptions for the input shift) × seeds, grouped by task so data is reused;
    `params` go to every method (each must have them)."""
    shift_list = _shifts(setup, shifts, paths)
    corruption_list = _corruptions(setup, corruptions, paths) if "input" in shift_list else []
    method_list, seed_list = _methods(methods), numbers("seed", seeds, SEED_BOUNDS)
    tasks = [(shift, c) for shift in shift_list for c in (corruption_list if shift == "input" else [None])]
    return [RunConfig(setup=setup, shift=shift, corruption=c, severity=severity, method=m, params=dict(params or {}),
                      recipe=recipe, seed=seed)
            for seed, (shift, c), m in product(seed_list, tasks, method_list)]


def shot_capacity(setup: str, shift: str, corruption: str | None, severity: int, seeds: Sequence[int],
                  paths: DataPaths | None) -> tuple[int, int]:
    """(class count, smallest per-class count of the target training pool over `seeds`): a K above it
    cannot be balanced (`experiment.pool_counts`: builds no task where the setup declares its pools, and
    keeps none it builds: a sweep's workers build their own)."""
    from ..experiment import pool_counts, resolve

    counts = [pool_counts(resolve(RunConfig(setup=setup, shift=shift, corruption=corruption, severity=severity,
                                            seed=seed), paths), paths, keep=False) for seed in seeds]
    return len(counts[0]), min(min(c) for c in counts)


def shots_configs(setup: str, shift: str, corruption: str | None, severity: int, methods: str, shots: str,
                  seeds: str, recipe: Recipe, paths: DataPaths | None = None,
                  capacity: Callable[..., tuple[int, int]] = shot_capacity) -> tuple[list[RunConfig], list[int]]:
    """(methods × K shots per class × corruptions × seeds, the K values skipped as larger than the smallest
    class); RunConfig.shots is the total, K × the task's class count (the dashboard's convention). On the
    input shift `corruption` may list several or be "all": the input level's curve is their mean, as in
    Table 1 and the seed paper's shot analysis."""
    _shifts(setup, shift, paths)
    corruptions = (_corruptions(setup, corruption, paths) if shift == "input" and corruption
                   else [task_corruption(shift, corruption)])
    per_class, method_list, seed_list = (numbers("shots per class", shots, Bounds(int, 1, MAX_SHOTS)),
                                         _methods(methods), numbers("seed", seeds, SEED_BOUNDS))
    sizes = [capacity(setup, shift, c, severity, seed_list, paths) for c in corruptions]
    classes, smallest = sizes[0][0], min(size for _, size in sizes)
    kept = [k for k in per_class if k <= smallest]
    if not kept:
        raise BadArgumentError("shots per class", shots, f"at most {smallest} (the target pool's smallest class)")
    return ([RunConfig(setup=setup, shift=shift, corruption=c, severity=severity, method=m,
                       recipe=replace(recipe, shots=k * classes), seed=seed)
             for seed, c, k, m in product(seed_list, corruptions, kept, method_list)],
            [k for k in per_class if k > smallest])


def grid_configs(setup: str, shift: str, corruption: str | None, severity: int, method: str,
                 grid: dict[str, Iterable[Any]], seeds: str, recipe: Recipe,
                 paths: DataPaths | None = None) -> list[RunConfig]:
    """One method over the cartesian product of its hyper-parameter values × seeds."""
    _shifts(setup, shift, paths)
    corruption = task_corruption(shift, corruption)
    if method == ALL or "," in method:
        raise BadArgumentError("method for a grid (exactly one)", method, _methods(ALL))
    (name,), seed_list = _methods(method), numbers("seed", seeds, SEED_BOUNDS)
    names, values = list(grid), [list(v) for v in grid.values()]
    return [RunConfig(setup=setup, shift=shift, corruption=corruption, severity=severity, method=name,
                      params=dict(zip(names, combo)), recipe=recipe, seed=seed)
            for seed, combo in product(seed_list, product(*values))]


def grid_values(method: str, given: dict[str, str]) -> dict[str, list[Any]]:
    """The values a hyper-parameter grid tries: each given KEY=V1,V2,... (every value checked against the
    parameter's bounds), else the grid the method declares."""
    from ..methods import method_class

    cls = method_class(method)
    if not given:
        if not cls.grid():
            raise AutoFTError(f"method {method} declares no hyper-parameter grid: give --values KEY=V1,V2,...")
        return {k: list(v) for k, v in cls.grid().items()}
    out = {}
    for key, text in given.items():
        if key not in cls.params:
            raise BadArgumentError(f"parameter for method {method}", key, list(cls.params))
        items = [v.strip() for v in text.split(",")]
        if not all(items):
            raise BadArgumentError(f"--values for {key} (comma-separated values, none empty)", text,
                                   cls.params[key].bounds.describe())
        out[key] = list(dict.fromkeys(cls.params[key].parse(key, v) for v in items))
    return out
