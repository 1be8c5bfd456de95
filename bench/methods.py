"""Each method's weight-computation time divided by one fine-tuning epoch's, on the digits setup.

Target (issue: fast fine-tuning): every method but cross-validation within 3 epochs.

    python bench/methods.py [--shift output] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autoft_core.config import RunConfig  # noqa: E402
from autoft_core.experiment import compute_weights, load_task, resolve  # noqa: E402
from autoft_core.finetune import finetune  # noqa: E402
from autoft_core.layers import partition  # noqa: E402
from autoft_core.methods import method_names  # noqa: E402

TARGET_EPOCHS = 3.0


def epoch_seconds(cfg: RunConfig, repeats: int) -> float:
    """One full-network fine-tuning epoch (training + validation), from runs of 3 and 0 epochs."""
    cfg = resolve(cfg)
    setup, data = load_task(cfg)

    def timed(epochs: int) -> float:
        model = setup.source_model(cfg.shift)
        layers = partition(model, cfg.recipe.granularity)
        start = time.perf_counter()
        finetune(model, layers, [1.0] * len(layers), data, replace(cfg.recipe, epochs=epochs), cfg.seed)
        return time.perf_counter() - start

    return statistics.median((timed(3) - timed(0)) / 3 for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shift", default="output")
    parser.add_argument("--corruption", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    corruption = args.corruption or ("gaussian_noise" if args.shift == "input" else None)
    base = RunConfig(setup="digits", shift=args.shift, corruption=corruption)
    compute_weights(base)  # warm caches: pretrained model, task data
    epoch = epoch_seconds(base, args.repeats)
    print(f"digits / {args.shift}: one fine-tuning epoch = {epoch:.3f} s")
    print(f"{'method':<26} {'weights s':>10} {'epochs':>8}  target <= {TARGET_EPOCHS:g} epochs")
    for name in method_names():
        cfg = RunConfig(setup="digits", shift=args.shift, corruption=corruption, method=name)
        seconds = statistics.median(_timed_weights(cfg) for _ in range(args.repeats))
        ratio = seconds / epoch
        note = "exempt (runs one fine-tuning per block)" if name == "cross-validation" else (
            "meets" if ratio <= TARGET_EPOCHS else f"misses by {ratio - TARGET_EPOCHS:.1f} epochs")
        print(f"{name:<26} {seconds:>10.3f} {ratio:>8.2f}  {note}")


def _timed_weights(cfg: RunConfig) -> float:
    start = time.perf_counter()
    compute_weights(cfg)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
