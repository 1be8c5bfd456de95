"""The command lines that reproduce what a page shows (`python -m autoft_core ...`), for the page report.

Recipe flags are written where they differ from the setup's default recipe (the CLI's default too), so
each line asks for exactly the runs the dashboard made; `--store` is added when the dashboard's store is
not the CLI's default one.
"""
from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autoft_core.config import RunConfig
from autoft_core.core.recipe import Recipe, field_info
from autoft_core.core.values import cli_flag
from autoft_core.setups import get_setup
from autoft_core.store import default_store_path

PREFIX = "python -m autoft_core"


def _recipe_flags(setup: str, recipe: Recipe | None, skip: tuple[str, ...] = ()) -> list[str]:
    """--name value for every recipe setting that differs from the setup's default."""
    if recipe is None:
        return []
    default, flags = get_setup(setup).recipe, []
    for name, _, _, bounds in field_info():
        value = getattr(recipe, name)
        if name in skip or value == getattr(default, name):
            continue
        flag = cli_flag(name)
        flags += [flag] if bounds.kind is bool else [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return flags


def _line(command: str, args: Sequence[Any], store: Path | None, device: str | None) -> str:
    extra = [] if store is None or Path(store) == default_store_path() else ["--store", str(store)]
    extra += ["--device", device] if device and device != "auto" else []
    return " ".join([PREFIX, command, *(shlex.quote(str(a)) for a in [*args, *extra])])


def _task_args(setup: str, shift: str, corruption: str | None, severity: int) -> list[Any]:
    args: list[Any] = ["--setup", setup, "--shift", shift]
    return args + (["--corruption", corruption, "--severity", severity] if shift == "input" else [])


def run_command(cfg: RunConfig, command: str = "finetune", store: Path | None = None, device: str | None = None) -> str:
    """`finetune` (or `weights`) for one run config."""
    args = _task_args(cfg.setup, cfg.shift, cfg.corruption, cfg.severity) + ["--method", cfg.method]
    for key, value in sorted(cfg.params.items()):
        args += ["--param", f"{key}={value}"]
    return _line(command, [*args, "--seed", cfg.seed, *_recipe_flags(cfg.setup, cfg.recipe)], store, device)


def sweep_command(setup: str, shifts: Sequence[str], corruptions: Sequence[str], severity: int,
                  methods: Sequence[str], seeds: Sequence[int], recipe: Recipe, store: Path | None = None,
                  device: str | None = None) -> str:
    """`sweep`: methods × shifts × corruptions × seeds."""
    args = ["--setup", setup, "--shifts", ",".join(shifts), "--corruptions", ",".join(corruptions) or "all",
            "--severity", severity, "--methods", ",".join(methods), "--seeds", ",".join(map(str, seeds))]
    return _line("sweep", [*args, *_recipe_flags(setup, recipe)], store, device)


def table_command(setup: str, severity: int, corruptions: Sequence[str], methods: Sequence[str],
                  seeds: Sequence[int], recipe: Recipe, metric: str, store: Path | None = None) -> str:
    """`table`: Table 1 of the stored runs of one recipe."""
    args = ["--setup", setup, "--metric", metric, "--severity", severity, "--corruptions",
            ",".join(corruptions) or "all", "--methods", ",".join(methods), "--seeds", ",".join(map(str, seeds))]
    return _line("table", [*args, *_recipe_flags(setup, recipe)], store, None)


def grid_command(cfg: RunConfig, values: dict[str, Sequence[Any]], seeds: Sequence[int], store: Path | None = None,
                 device: str | None = None) -> str:
    """`grid`: one method over its hyper-parameter values × seeds (other parameters as in `cfg`)."""
    args = _task_args(cfg.setup, cfg.shift, cfg.corruption, cfg.severity) + ["--method", cfg.method]
    for key, options in values.items():
        args += ["--values", f"{key}={','.join(map(str, options))}"]
    args += ["--seeds", ",".join(map(str, seeds))]
    return _line("grid", [*args, *_recipe_flags(cfg.setup, cfg.recipe)], store, device)


def shots_command(cfg: RunConfig, methods: Sequence[str], per_class: Sequence[int], seeds: Sequence[int],
                  store: Path | None = None, device: str | None = None, corruption: str | None = None) -> str:
    """`shots`: methods × K examples per class × seeds (`corruption`: instead of the config's, e.g. "all")."""
    args = _task_args(cfg.setup, cfg.shift, corruption or cfg.corruption, cfg.severity)
    args += ["--methods", ",".join(methods), "--shots", ",".join(map(str, per_class)), "--seeds",
             ",".join(map(str, seeds))]
    return _line("shots", [*args, *_recipe_flags(cfg.setup, cfg.recipe, skip=("shots",))], store, device)
