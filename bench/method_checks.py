"""Re-measure the weighting methods' acceptance figures on the embedded digits setup (issue: faithful,
stable weighting methods). Runs go through the result store, so a second call is mostly cache hits.

    python bench/method_checks.py acceptance      # +hessian stability and accuracy, surprise vs noise floor
    python bench/method_checks.py scales [--seeds 0,1,2]   # each scoring method × scale on two tasks
    python bench/method_checks.py hessian [--param key=value ...]  # +hessian weights' stability across seeds

Figures: Spearman rank correlation of +hessian's weights between each pair of seeds 0, 1, 2 on the
label flip (target ≥ 0.8) and whether the head is the top layer; +hessian (default scale) against full
fine-tuning on the label flip (mean test accuracy of 3 seeds; target: at least as accurate); surprise
on the label flip against its noise floor (target: every layer ≤ 3×) and on gaussian_noise severity 5
(target: the first layer has the largest score); the scale grid (max / raw / mean) of every scoring
method on the label flip and on frost severity 5 with 100 shots.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scipy.stats import spearmanr  # noqa: E402

from autoft_core.config import RunConfig  # noqa: E402
from autoft_core.experiment import compute_weights, run_experiment  # noqa: E402
from autoft_core.methods import method_class, method_names  # noqa: E402
from autoft_core.methods._scale import SCALES  # noqa: E402

FLIP = {"shift": "output"}
FROST = {"shift": "input", "corruption": "frost", "severity": 5, "shots": 100}
NOISE = {"shift": "input", "corruption": "gaussian_noise", "severity": 5}
SEEDS = (0, 1, 2)


def _cfg(task: dict, method: str, seed: int, **params: Any) -> RunConfig:
    return RunConfig(setup="digits", method=method, params=params, seed=seed, **task)


def _accuracy(task: dict, method: str, seeds: tuple[int, ...], **params: Any) -> list[float]:
    return [run_experiment(_cfg(task, method, seed, **params), device="cpu")["test_acc"] for seed in seeds]


def hessian_stability(**params: Any) -> bool:
    """Spearman of +hessian's weights between seeds on the label flip; the head on top for every seed."""
    runs = {seed: compute_weights(_cfg(FLIP, "auto-rgn+hessian", seed, **params), device="cpu") for seed in SEEDS}
    head_on_top = all(max(range(len(r["weights"])), key=r["weights"].__getitem__) == len(r["weights"]) - 1
                      for r in runs.values())
    rhos = {(a, b): spearmanr(runs[a]["weights"], runs[b]["weights"]).statistic
            for a, b in itertools.combinations(SEEDS, 2)}
    for seed, run in runs.items():
        print(f"  seed {seed}: weights " + " ".join(f"{w:.3g}" for w in run["weights"]) + f"  ({run['seconds']:.1f} s)")
    print("  Spearman " + ", ".join(f"{a}-{b} {rho:.3f}" for (a, b), rho in rhos.items())
          + f"; head on top for all seeds: {head_on_top}")
    return min(rhos.values()) >= 0.8 and head_on_top


def acceptance() -> None:
    print("auto-rgn+hessian weights on the label flip, seeds 0, 1, 2 (target: Spearman >= 0.8, head on top)")
    stable = hessian_stability()
    full, newton = _accuracy(FLIP, "full", SEEDS), _accuracy(FLIP, "auto-rgn+hessian", SEEDS)
    print(f"label flip test accuracy, seeds 0-2: full {_pct(full)}; auto-rgn+hessian (default scale) {_pct(newton)}"
          f"  -> {'meets' if statistics.mean(newton) >= statistics.mean(full) else 'misses'}")
    flip = compute_weights(_cfg(FLIP, "surprise", 0), device="cpu")
    ratios = [s / f for s, f in zip(flip["scores"], flip["extras"]["noise_floor"])]
    print("surprise / noise floor on the label flip (target <= 3 everywhere): "
          + " ".join(f"{r:.2f}" for r in ratios) + f"  -> {'meets' if max(ratios) <= 3 else 'misses'}")
    noise = compute_weights(_cfg(NOISE, "surprise", 0), device="cpu")
    top = max(range(len(noise["scores"])), key=noise["scores"].__getitem__)
    print(f"surprise on gaussian_noise 5: largest at {noise['layers'][top]} "
          f"({noise['scores'][top]:.4g}; first layer {noise['scores'][0]:.4g})  -> {'meets' if top == 0 else 'misses'}")
    print(f"+hessian stability: {'meets' if stable else 'misses'}")


def scales(seeds: tuple[int, ...]) -> None:
    scoring = [m for m in method_names() if "scale" in method_class(m).params]
    tasks = {"label flip": FLIP, "frost 5, 100 shots": FROST}
    print(f"test accuracy (%), mean over seeds {','.join(map(str, seeds))}; * = the method's default scale")
    print(f"{'method':<26}" + "".join(f"{name + ' ' + s:>24}" for name in tasks for s in SCALES))
    for task in tasks.values():
        print(f"{'full':<26}" + f"{_pct(_accuracy(task, 'full', seeds)):>24}")
    for method in scoring:
        default = method_class(method).params["scale"].default
        cells = [_pct(_accuracy(task, method, seeds, scale=scale)) + ("*" if scale == default else " ")
                 for task in tasks.values() for scale in SCALES]
        print(f"{method:<26}" + "".join(f"{c:>24}" for c in cells), flush=True)


def _pct(values: list[float]) -> str:
    spread = f" ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else ""
    return f"{100 * statistics.mean(values):.1f}" + spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=("acceptance", "scales", "hessian"))
    parser.add_argument("--seeds", default="0", help="scales: comma-separated seeds (default 0)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="hessian: a parameter")
    args = parser.parse_args()
    if args.check == "acceptance":
        acceptance()
    elif args.check == "scales":
        scales(tuple(int(s) for s in args.seeds.split(",")))
    else:
        hessian_stability(**dict(p.split("=", 1) for p in args.param))


if __name__ == "__main__":
    main()
