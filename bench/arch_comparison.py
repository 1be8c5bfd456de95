"""The embedded ResNet against the embedded ViT (`--arch vit`): test accuracy per method and kind of shift
(3 seeds, each setup's default recipe) and where each scoring method puts its weight, from the result store.

Fill the store first (each command runs only what is missing; the ResNet's other runs come from README's
Table 1 sweep and `bench/embedded_checks.py`'s surgical sweeps; only runs at each method's current
default parameters count):

    python -m autoft_core sweep --setup digits --shifts input,feature \
        --corruptions frost,gaussian_noise,glass_blur,jpeg_compression \
        --methods auto-rgn+hessian --seeds 0,1,2 --max-parallel 2
    python -m autoft_core sweep --setup digits --arch vit \
        --corruptions frost,gaussian_noise,glass_blur,jpeg_compression \
        --methods full,linear-probe,surgical,auto-rgn,auto-rgn+hessian,criticality-random,cross-validation,surprise \
        --seeds 0,1,2 --max-parallel 2
    python -m autoft_core sweep --setup digits --arch vit \
        --corruptions frost,gaussian_noise,glass_blur,jpeg_compression \
        --methods surgical --param block=-1 --seeds 0,1,2 --max-parallel 2
    python -m autoft_core sweep --setup digits --arch vit --shifts feature --methods surgical --param block=1 \
        --seeds 0,1,2 --max-parallel 2
    python -m autoft_core sweep --setup digits --arch vit --shifts feature --methods surgical --param block=2 \
        --seeds 0,1,2 --max-parallel 2
    python bench/arch_comparison.py

The input level is the mean over four corruptions at severity 5, one per CIFAR-10-C family (noise,
blur, weather, digital), for both networks.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from autoft_core.setups import get_setup  # noqa: E402
from autoft_core.store import ResultStore  # noqa: E402
from bench.default_runs import default_runs as runs_at_defaults, setup_runs  # noqa: E402

SETUPS = {"digits": "ResNet", "digits-vit": "ViT"}
CORRUPTIONS = ("frost", "gaussian_noise", "glass_blur", "jpeg_compression")
SHIFTS = ("input", "feature", "output")
ROWS = {"full": "full", "linear-probe": "linear-probe", "surgical[0]": "surgical, first block",
        "surgical[1]": "surgical, second block", "surgical[2]": "surgical, third block",
        "surgical[3]": "surgical, last block (head)", "auto-rgn": "auto-rgn", "auto-rgn+hessian": "auto-rgn+hessian",
        "criticality-random": "criticality-random", "cross-validation": "cross-validation", "surprise": "surprise"}
METHODS = ("full", "linear-probe", "surgical", "auto-rgn", "auto-rgn+hessian", "criticality-random",
           "cross-validation", "surprise")
SCORING = ("auto-rgn", "auto-rgn+hessian", "criticality-random", "surprise")
SEEDS = (0, 1, 2)
BLOCKS = 4  # both networks' block partitions: first block, two middle ones, head


def default_runs(store: ResultStore) -> pd.DataFrame:
    """Both setups' runs at their own default recipes and each method's default parameters (surgical: once
    per block), seeds 0-2, on the compared tasks: Table 1's selection (`experiments.tables.select`)."""
    return pd.concat([runs_at_defaults(setup_runs(store, setup), setup, METHODS, SEEDS, SHIFTS, CORRUPTIONS, BLOCKS)
                      for setup in SETUPS])


def accuracy_table(runs: pd.DataFrame) -> str:
    """Markdown: method x (shift, network), mean ± std over seeds of the test accuracy (%), best in bold."""
    per_seed = runs.groupby(["setup", "row", "shift", "seed"])["test_acc"].mean().mul(100)  # input: mean of 4
    stats = per_seed.groupby(["setup", "row", "shift"]).agg(["mean", "std", "count"])
    shown = stats[stats.index.get_level_values("row").isin(list(ROWS))]
    best = shown["mean"].groupby(["setup", "shift"]).max()  # the best of the rows shown
    header = "| method | " + " | ".join(f"{shift}: {SETUPS[s]}" for shift in SHIFTS for s in SETUPS) + " |"
    lines = [header, "|:--|" + "--:|" * (len(SHIFTS) * len(SETUPS))]
    for row, name in ROWS.items():
        cells = []
        for shift in SHIFTS:
            for setup in SETUPS:
                if (setup, row, shift) not in stats.index:
                    cells.append("–")
                    continue
                mean, std, count = stats.loc[(setup, row, shift)]
                text = f"{mean:.1f} ± {std:.1f}" + ("" if count == len(SEEDS) else f" ({count:.0f} seeds)")
                cells.append(f"**{text}**" if mean == best[(setup, shift)] else text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def weight_summary(runs: pd.DataFrame) -> str:
    """Per network, scoring method and shift: the multipliers averaged over seeds (and corruptions)."""
    lines = []
    for setup in SETUPS:
        for method in SCORING:
            for shift in SHIFTS:
                chosen = runs[(runs["setup"] == setup) & (runs["method"] == method) & (runs["shift"] == shift)]
                if chosen.empty:
                    continue
                weights = np.mean([np.asarray(w, dtype=float) for w in chosen["weights"]], axis=0)
                layers = chosen["layers"].iloc[0]
                lines.append(f"{SETUPS[setup]:7} {method:19} {shift:8} top {layers[int(np.argmax(weights))]:21} "
                             f"head/mean {weights[-1] / weights.mean():5.2f}  " + " ".join(f"{w:.2f}" for w in weights))
    return "\n".join(lines)


def main() -> None:
    runs = default_runs(ResultStore())
    for setup in SETUPS:
        print(f"{SETUPS[setup]}: {setup}'s default recipe {get_setup(setup).recipe.to_dict()}")
    print(accuracy_table(runs))
    print("\nlayer multipliers (mean over seeds and corruptions; layers input -> output):")
    print(weight_summary(runs))


if __name__ == "__main__":
    main()
