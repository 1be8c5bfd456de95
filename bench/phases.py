"""Where a fine-tuning run's time goes: a fixed cost per run and a cost per epoch, the project's against the
plain loop's (bench/throughput.py's), for each step case; and the project's fixed cost by phase.

A run of E epochs takes about fixed + E × per_epoch. Timing each side at two epoch counts E1 < E2 (median of
`--repeats` alternated runs each) gives per_epoch = (T(E2) − T(E1)) / (E2 − E1) and fixed = T(E1) − E1 ×
per_epoch: a step ratio (plain per-epoch / project per-epoch) that fixed costs do not blur, and what a run
pays once (set-up, zero-shot and final evaluation, frozen-prefix features, the best state's copies). With
`--phases`, the functions `finetune` calls once or once per epoch are wrapped in synchronised timers and one
more project run of E2 epochs prints each one's total. With `--batch 256 --model wrn --device cuda`, the
per-epoch slope gives the steady-state MFU (training FLOP counted by torch's FlopCounterMode).

    python bench/phases.py [--model digits|wrn] [--device cuda] [--cases all,frozen3,frozen9] [--phases]
    python bench/phases.py --model wrn --device cuda --cases all --batch 256
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.throughput import build, step_sides, synthetic, train_flop_per_image  # noqa: E402
from autoft_core import finetune as finetune_module  # noqa: E402
from autoft_core.core.recipe import Recipe  # noqa: E402
from autoft_core.device import peak_bf16_flops, prepare_model, resolve_device  # noqa: E402
from autoft_core.layers import partition  # noqa: E402

PHASES = ("flat_layer_params", "_skip_frozen_prefix", "model_digest", "cached_accuracy", "accuracy",
          "clone_state", "param_change", "_best_state_test_acc", "_train_epoch", "_finite")
SHARES = {"all": 0.0, "frozen3": 0.3, "frozen9": 0.9}


def fit(e1: int, t1: float, e2: int, t2: float) -> tuple[float, float]:
    """(fixed, per_epoch) of the line through (e1, t1) and (e2, t2)."""
    per_epoch = (t2 - t1) / (e2 - e1)
    return t1 - e1 * per_epoch, per_epoch


def medians(run: dict[str, Callable[[int], float]], epochs: tuple[int, int], repeats: int) -> dict:
    """Median seconds per (side, epoch count): one warm-up each, then alternated rounds."""
    for fn in run.values():
        fn(epochs[0])
    times: dict = defaultdict(list)
    for r in range(repeats):
        order = list(run.items()) if r % 2 == 0 else list(run.items())[::-1]
        for e in (epochs if r % 2 == 0 else epochs[::-1]):
            for name, fn in order:
                times[name, e].append(fn(e))
    return {key: statistics.median(values) for key, values in times.items()}


def phase_totals(run: Callable[[], float], device: torch.device) -> tuple[float, dict[str, float]]:
    """One project run (`run()` returns its seconds) with each of PHASES wrapped in a synchronised timer: (run
    seconds, seconds per phase)."""
    totals: dict[str, float] = defaultdict(float)
    originals = {name: getattr(finetune_module, name) for name in PHASES}

    def wrapped(name: str, fn: Callable) -> Callable:
        def timer(*args, **kwargs):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                totals[name] += time.perf_counter() - start
        return timer

    for name, fn in originals.items():
        setattr(finetune_module, name, wrapped(name, fn))
    try:
        seconds = run()
    finally:
        for name, fn in originals.items():
            setattr(finetune_module, name, fn)
    return seconds, dict(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("digits", "wrn"), default="digits")
    parser.add_argument("--device", default=None)
    parser.add_argument("--cases", default="all,frozen3,frozen9")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", default="2,6", help="the two epoch counts E1,E2 (default 2,6)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--phases", action="store_true", help="the project's fixed cost by phase")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = resolve_device(args.device)
    e1, e2 = (int(e) for e in args.epochs.split(","))
    cfg = Recipe(epochs=e2, lr=1e-4, batch_size=args.batch)
    base = prepare_model(build(args.model), device)
    train = synthetic(args.images, device)
    n_layers = len(partition(base, "module"))
    what = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU, 1 thread, CPU time"
    print(f"model {args.model}; {what}; {args.images} images, batch {args.batch}, epochs {e1} and {e2}, "
          f"{args.repeats} alternated repeats (medians)")
    for case in args.cases.split(","):
        frozen = round(SHARES[case] * n_layers)
        run = step_sides(base, frozen, train, cfg, device)
        t = medians(run, (e1, e2), args.repeats)
        (plain_fixed, plain_epoch), (fixed, epoch) = (fit(e1, t[s, e1], e2, t[s, e2]) for s in ("plain", "project"))
        print(f"{frozen}/{n_layers} frozen: per epoch plain {plain_epoch * 1e3:.1f} ms, project {epoch * 1e3:.1f} ms "
              f"(ratio {plain_epoch / epoch:.3f}); fixed per run plain {plain_fixed * 1e3:.1f} ms, project "
              f"{fixed * 1e3:.1f} ms; at {e2} epochs ratio {t['plain', e2] / t['project', e2]:.3f}", flush=True)
        if device.type == "cuda" and args.model == "wrn":
            rate = args.images / epoch
            peak = peak_bf16_flops(torch.cuda.get_device_name(device))
            flop = rate * train_flop_per_image(base, device)
            print(f"  steady state: {rate:.0f} images/s, {flop / 1e12:.1f} TFLOP/s"
                  + (f", MFU {100 * flop / peak:.1f}% of {peak / 1e12:.0f}" if peak and frozen == 0 else ""))
        if args.phases:
            seconds, totals = phase_totals(lambda: run["project"](e2), device)
            listed = ", ".join(f"{name} {1e3 * s:.1f}" for name, s in sorted(totals.items(), key=lambda kv: -kv[1]))
            print(f"  phases of one {e2}-epoch project run ({1e3 * seconds:.1f} ms, ms each): {listed}", flush=True)


if __name__ == "__main__":
    main()
