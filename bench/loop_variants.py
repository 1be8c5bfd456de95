"""Which part of a `finetune` run costs more than the plain loop: the same epochs built up piece by piece.

Variants, each timed over whole runs of `--epochs` epochs (wall and process CPU time, ms per epoch,
median [range] of `--repeats` alternated rounds after one warm-up each): the plain loop with torch's
fused Adam; it with a host sync per epoch; it with the project's per-step statistics (loss sum, correct
count, non-finite flag on the device) and that sync; the same three with the project's
LayerwiseOptimizer instead of torch.optim; the project's own `_train_epoch`; and the whole `finetune`
(8-image validation and test; on the CPU pinned to the one thread, its evaluation inline as the
others'). Equal lines mean that piece costs nothing; on CUDA, CPU time close to wall time means the
host issuing kernels is the bound.

    python bench/loop_variants.py --device cuda [--model wrn] [--repeats 5]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.throughput import build, epochs_loop, synthetic  # noqa: E402
from autoft_core import finetune as finetune_module  # noqa: E402
from autoft_core.core.data import TaskData  # noqa: E402
from autoft_core.core.recipe import Recipe  # noqa: E402
from autoft_core.device import pinned_threads, prepare_model, resolve_device  # noqa: E402
from autoft_core.evaluation import clear_accuracy_cache  # noqa: E402
from autoft_core.layers import partition  # noqa: E402
from autoft_core.optim import LayerwiseOptimizer  # noqa: E402


def layerwise(model: torch.nn.Module, cfg: Recipe, steps_per_epoch: int) -> LayerwiseOptimizer:
    """The project's optimizer over every layer at multiplier 1."""
    named = dict(model.named_parameters())
    layers = partition(model, "module")
    optimizer = LayerwiseOptimizer([[named[p] for p in layer.param_names] for layer in layers], cfg,
                                   total_steps=cfg.epochs * steps_per_epoch, epoch_steps=steps_per_epoch)
    optimizer.apply([1.0] * len(layers))
    return optimizer


def variants(base: torch.nn.Module, data: TaskData, cfg: Recipe) -> dict[str, Callable[[], None]]:
    """Name -> one run of that variant on a fresh copy of `base`."""
    steps_per_epoch = -(-len(data.train) // cfg.batch_size)

    def plain(stats: bool, sync: bool) -> Callable[[], None]:
        def run() -> None:
            model = copy.deepcopy(base)
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)
            epochs_loop(model, data.train, cfg.epochs, cfg.batch_size, opt.step,
                        lambda: opt.zero_grad(set_to_none=True), stats, sync)
        return run

    def project_optimizer(stats: bool, sync: bool) -> Callable[[], None]:
        def run() -> None:
            model = copy.deepcopy(base)
            opt = layerwise(model, cfg, steps_per_epoch)
            epochs_loop(model, data.train, cfg.epochs, cfg.batch_size, opt.step, opt.zero_grad, stats, sync)
        return run

    def train_epoch() -> None:
        model = copy.deepcopy(base)
        opt = layerwise(model, cfg, steps_per_epoch)
        generator = torch.Generator().manual_seed(0)
        for _ in range(cfg.epochs):
            loss_sum, correct, bad, _ = finetune_module._train_epoch(model, model, data.train, opt, cfg, None,
                                                                     generator)
            torch.stack([loss_sum, correct.float(), bad.float()]).tolist()

    def whole() -> None:
        model = copy.deepcopy(base)
        clear_accuracy_cache()
        layers = partition(model, "module")
        device = data.train.x.device
        with pinned_threads(torch.get_num_threads() if device.type == "cpu" else None):  # evaluation inline
            finetune_module.finetune(model, layers, [1.0] * len(layers), data, cfg, 0, device)

    return {"plain": plain(False, False), "plain+sync": plain(False, True), "plain+stats+sync": plain(True, True),
            "layerwise": project_optimizer(False, False), "layerwise+sync": project_optimizer(False, True),
            "layerwise+stats+sync": project_optimizer(True, True), "_train_epoch": train_epoch,
            "finetune": whole}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("digits", "wrn"), default="wrn")
    parser.add_argument("--device", default=None)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = resolve_device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cfg = Recipe(epochs=args.epochs, lr=1e-4, batch_size=64)
    tiny = synthetic(8, device, seed=1)
    data = TaskData(source=tiny, train=synthetic(args.images, device), val=tiny, test=tiny, num_classes=10)
    runs = variants(prepare_model(build(args.model), device), data, cfg)

    def timed(fn: Callable[[], None]) -> tuple[float, float]:
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        sync()
        return time.perf_counter() - wall, time.process_time() - cpu

    for fn in runs.values():
        fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for r in range(args.repeats):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            times[name].append(timed(runs[name]))
    what = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU, 1 thread"
    print(f"{what}; {args.model}, {args.images} images x {args.epochs} epochs, batch 64, {args.repeats} alternated "
          "rounds; ms per epoch, median [range]")
    for name, pairs in times.items():
        walls, cpus = (sorted(1e3 * t / args.epochs for t in side) for side in zip(*pairs))
        print(f"{name:<22} wall {statistics.median(walls):7.1f} [{walls[0]:.1f}-{walls[-1]:.1f}]  "
              f"cpu {statistics.median(cpus):7.1f} [{cpus[0]:.1f}-{cpus[-1]:.1f}]", flush=True)


if __name__ == "__main__":
    main()
