"""The stored runs the bench reports read: a setup's default recipe and each method's default parameters,
surgical once per block, through Table 1's own selection (`experiments.tables.select`: newest per cell,
any code version), so every report counts the same runs the table does."""
from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from autoft_core.core.recipe import DEFAULT_SEVERITY  # noqa: E402
from autoft_core.experiments.tables import Selection, select  # noqa: E402
from autoft_core.methods import resolve_params  # noqa: E402
from autoft_core.setups import get_setup  # noqa: E402
from autoft_core.store import ResultStore  # noqa: E402


def setup_runs(store: ResultStore, setup: str) -> pd.DataFrame:
    """Every stored run of `setup` (read once, then selected from as often as a report needs)."""
    runs = store.frame(setup=setup)
    if runs.empty:
        raise SystemExit(f"the store has no {setup} runs: run the commands in this script's docstring first")
    return runs


def default_runs(runs: pd.DataFrame, setup: str, methods: Sequence[str], seeds: Sequence[int],
                 shifts: Sequence[str], corruptions: Sequence[str], blocks: int,
                 recipe: dict[str, Any] | None = None, code_version: str | None = None) -> pd.DataFrame:
    """Of `runs` (`setup_runs`), those at `setup`'s default recipe (`recipe` overrides some settings) for
    `seeds`, tagged `row`: each of `methods` but surgical at its default parameters (row = the method), and
    surgical once per block of a `blocks`-block partition (row "surgical[b]", b = 0 nearest the input; -1
    counts as the last); `code_version`: only runs of that engine version (None: any)."""
    scored = [m for m in methods if m != "surgical"]
    base = Selection(setup=setup, shifts=shifts, corruptions=corruptions, severity=DEFAULT_SEVERITY,
                     recipe={**get_setup(setup).recipe.to_dict(), **(recipe or {})},
                     default_params={m: resolve_params(m, {}) for m in scored}, code_version=code_version,
                     methods=scored, seeds=seeds)
    frames = [select(runs, base).assign(row=lambda f: f["method"])]
    if "surgical" in methods:
        for block in (*range(blocks), -1):
            one = replace(base, methods=["surgical"],
                          default_params={"surgical": resolve_params("surgical", {"block": block})})
            frames.append(select(runs, one).assign(row=f"surgical[{block % blocks}]"))
    return pd.concat(frames)
