"""Measure the embedded default against its acceptance figures (issue: an embedded default that shows
the paper's findings), from the runs in the result store, at the digits setup's default recipe.

Fill the store first (each command runs only what is missing):

    python -m autoft_core sweep --setup digits --methods all --seeds 0,1,2 --max-parallel 2
    python -m autoft_core sweep --setup digits --shifts input,output --methods surgical --param block=-1 \
        --seeds 0,1,2 --max-parallel 2
    python -m autoft_core sweep --setup digits --shifts feature --methods surgical --param block=1 \
        --seeds 0,1,2 --max-parallel 2
    python -m autoft_core sweep --setup digits --shifts feature --methods surgical --param block=2 \
        --seeds 0,1,2 --max-parallel 2
    python -m autoft_core sweep --setup digits --shifts feature --methods surgical --param block=3 \
        --seeds 0,1,2 --max-parallel 2
    python -m autoft_core shots --setup digits --shift input --corruption all \
        --methods full,auto-rgn,criticality-random,cross-validation --shots 1,5,10,25,50,100 \
        --seeds 0,1,2 --max-parallel 2
    python bench/embedded_checks.py

For another recipe, add its flags to every command (e.g. `--schedule linear`, with `--store FILE` to keep
those runs apart) and give this script the same settings: `--set schedule=linear --store FILE`.

Figures (3 seeds, mean): each corruption's zero-shot drop from the clean target at severity 5 (median
≥ 15 points, at most 3 of 14 under 5); surgical fine-tuning of the first against the last block on the
input level (mean of the 14 corruptions), the label flip and the feature level; the spread of full /
auto-rgn / criticality-random / cross-validation per kind of shift (≥ 3 points, full not the best on
input and output); and each of those methods' accuracy against K shots per class on the input level (the
mean of the 14 corruptions, as Table 1 and the seed paper's shot analysis on CIFAR-10-C report it;
`--shot-corruption frost` for one corruption, whose runs `shots --corruption frost` makes).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from autoft_core.config import code_version  # noqa: E402
from autoft_core.core.recipe import CORRUPTIONS, DEFAULT_SEVERITY, SHIFTS  # noqa: E402
from autoft_core.errors import AutoFTError  # noqa: E402
from autoft_core.setups import get_setup  # noqa: E402
from autoft_core.shift_sizes import shift_sizes  # noqa: E402
from autoft_core.store import ResultStore  # noqa: E402
from bench.default_runs import default_runs, setup_runs  # noqa: E402

COMPARED = ("full", "auto-rgn", "criticality-random", "cross-validation")
KS = (1, 5, 10, 25, 50, 100)
BLOCKS = 4  # the digits ResNet's block partition: stem+stage1, stage2, stage3, head


def _verdict(ok: bool) -> str:
    return "meets" if ok else "misses"


def shift_size_check(seeds: list[int]) -> None:
    """Zero-shot drop of each corruption from the clean target (points, mean over seeds)."""
    drops: dict[str, list[float]] = {c: [] for c in CORRUPTIONS}
    for seed in seeds:
        out = shift_sizes("digits", DEFAULT_SEVERITY, seed, device="cpu")
        for task in out["tasks"]:
            if task["shift"] == "input":
                drops[task["corruption"]].append(100 * (out["clean_acc"] - task["zero_shot_acc"]))
    mean = {c: statistics.mean(v) for c, v in drops.items()}
    median, small = statistics.median(mean.values()), [c for c, d in mean.items() if d < 5]
    print("zero-shot drop from clean at severity 5 (points): "
          + ", ".join(f"{c} {d:.1f}" for c, d in sorted(mean.items(), key=lambda kv: -kv[1])))
    print(f"  median {median:.1f} (target >= 15) -> {_verdict(median >= 15)}; under 5 points: {len(small)} "
          f"{small} (target <= 3) -> {_verdict(len(small) <= 3)}")


def _acc(runs: pd.DataFrame, row: str, shift: str,
         corruptions: tuple[str, ...] | list[str] = CORRUPTIONS) -> float | None:
    """Mean test accuracy (%) of a row (a method, or "surgical[b]") on a kind of shift: over seeds, and
    over `corruptions` on input (None unless each has runs)."""
    rows = runs[(runs["row"] == row) & (runs["shift"] == shift)]
    if rows.empty:
        return None
    if shift == "input":
        per = rows.groupby("corruption")["test_acc"].mean()
        if len(per) < len(corruptions):
            return None
        return 100 * float(per.mean())
    return 100 * float(rows["test_acc"].mean())


def _fmt(value: float | None) -> str:
    return "missing" if value is None else f"{value:.1f}"


def surgical_check(runs: pd.DataFrame) -> None:
    """First block alone against the last block alone, per kind of shift."""
    first_in, last_in = _acc(runs, "surgical[0]", "input"), _acc(runs, f"surgical[{BLOCKS - 1}]", "input")
    first_out, last_out = _acc(runs, "surgical[0]", "output"), _acc(runs, f"surgical[{BLOCKS - 1}]", "output")
    feature = {str(b): _acc(runs, f"surgical[{b}]", "feature") for b in range(BLOCKS)}
    print(f"surgical, input (14 corruptions): first {_fmt(first_in)} vs last {_fmt(last_in)} (first ahead by >= 10)"
          f" -> {_verdict(None not in (first_in, last_in) and first_in - last_in >= 10)}")
    print(f"surgical, label flip: first {_fmt(first_out)} vs last {_fmt(last_out)} (last ahead by >= 10)"
          f" -> {_verdict(None not in (first_out, last_out) and last_out - first_out >= 10)}")
    known = {b: a for b, a in feature.items() if a is not None}
    best = max(known, key=known.get) if known else None
    print("surgical, feature level by block: " + ", ".join(f"{b}: {_fmt(a)}" for b, a in feature.items())
          + f" (best not the first) -> {_verdict(len(known) == BLOCKS and best != '0')}")


def separation_check(runs: pd.DataFrame) -> None:
    """Best minus worst of COMPARED per kind of shift; whether full is the best."""
    for shift in ("input", "feature", "output"):
        accs = {m: _acc(runs, m, shift) for m in COMPARED}
        known = {m: a for m, a in accs.items() if a is not None}
        spread = max(known.values()) - min(known.values()) if known else 0.0
        full_best = bool(known) and max(known, key=known.get) == "full"
        need_not_full = shift in ("input", "output")
        ok = len(known) == len(COMPARED) and spread >= 3 and not (need_not_full and full_best)
        print(f"{shift}: " + ", ".join(f"{m} {_fmt(a)}" for m, a in accs.items())
              + f"; spread {spread:.1f} (>= 3){'; full best' if full_best else ''} -> {_verdict(ok)}")


def shots_check(stored: pd.DataFrame, seeds: list[int], recipe: dict[str, Any], corruptions: list[str],
                version: str | None) -> None:
    """Accuracy against K per class on the input level (mean over `corruptions`): rising, dips of at most
    1 point."""
    curves: dict[str, list[float | None]] = {m: [] for m in COMPARED}
    for k in KS:
        runs = default_runs(stored, "digits", COMPARED, seeds, ["input"], corruptions, BLOCKS,
                            recipe={**recipe, "shots": 10 * k}, code_version=version)
        for method in COMPARED:
            curves[method].append(_acc(runs, method, "input", corruptions))
    print(f"shot curves on the input level, mean of {len(corruptions)} corruption(s) "
          f"({'all' if len(corruptions) == len(CORRUPTIONS) else ', '.join(corruptions)}):")
    for method, curve in curves.items():
        known = [c for c in curve if c is not None]
        dips = [a - b for a, b in zip(known, known[1:]) if a > b]
        ok = len(known) == len(curve) and all(d <= 1 for d in dips)
        print(f"shots {method}: " + ", ".join(f"K={k} {_fmt(c)}" for k, c in zip(KS, curve))
              + f" -> {_verdict(ok)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--store", default=None, help="result store file (default cache/results.sqlite)")
    parser.add_argument("--any-version", action="store_true",
                        help="read runs of any engine version (default: the current code's only, as `table`)")
    parser.add_argument("--shot-corruption", default="all",
                        help="the shot curves' corruptions, comma-separated, or all (default: the input level's mean)")
    parser.add_argument("--set", action="append", default=[], metavar="SETTING=VALUE",
                        help="a recipe setting other than the setup's default (repeatable; the runs swept with "
                             "the same flag), e.g. --set schedule=linear")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if any("=" not in item for item in args.set):
        parser.error("--set takes SETTING=VALUE, e.g. --set schedule=linear")
    given = dict(item.split("=", 1) for item in args.set)
    try:
        recipe = {k: getattr(get_setup("digits").recipe.with_values(**given), k) for k in given}
    except AutoFTError as exc:
        parser.error(str(exc))
    store = ResultStore(args.store)
    shift_size_check(seeds)
    stored = setup_runs(store, "digits")
    version = None if args.any_version else code_version()
    runs = default_runs(stored, "digits", ("surgical", *COMPARED), seeds, SHIFTS, CORRUPTIONS, BLOCKS, recipe, version)
    surgical_check(runs)
    separation_check(runs)
    shot_corruptions = list(CORRUPTIONS) if args.shot_corruption == "all" else args.shot_corruption.split(",")
    if unknown := [c for c in shot_corruptions if c not in CORRUPTIONS]:
        parser.error(f"--shot-corruption: unknown {', '.join(unknown)}; use some of {', '.join(CORRUPTIONS)} or all")
    shots_check(stored, seeds, recipe, shot_corruptions, version)


if __name__ == "__main__":
    main()
