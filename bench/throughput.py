"""Images/s of the project's fine-tuning loop versus a plain hand-written PyTorch loop.

Same model, batch, data on the device and precision settings (bf16 autocast + channels-last +
fused Adam on CUDA; fp32 + foreach Adam on CPU; BatchNorm statistics frozen in both), A/B
alternated, median of several repeats. On CUDA it also prints the model FLOPs utilisation
(WRN-28-10 forward ~5.25 GFLOP per 32x32 image; a training step ~3x that) and times one whole
CIFAR-10-C-sized run (1,000 images x 25 epochs + evaluation on 10,000 test images).

    python bench/throughput.py                       # digits net on this machine's device
    python bench/throughput.py --model wrn --device cuda
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autoft_core.compat import import_robustbench  # noqa: E402
from autoft_core.core.data import Split, TaskData  # noqa: E402
from autoft_core.device import autocast, prepare_model, resolve_device  # noqa: E402
from autoft_core.core.recipe import Recipe  # noqa: E402
from autoft_core.finetune import set_train_mode, finetune  # noqa: E402
from autoft_core.layers import partition  # noqa: E402
from autoft_core.models.digits_net import DigitsResNet  # noqa: E402

WRN_FORWARD_FLOP = 5.25e9
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def build(name: str) -> torch.nn.Module:
    if name == "digits":
        return DigitsResNet()
    import_robustbench()
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet

    return WideResNet(depth=28, widen_factor=10)


def synthetic(n: int, device: torch.device, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    return Split(torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_loop(model: torch.nn.Module, train: Split, epochs: int, batch: int, lr: float, device: torch.device) -> float:
    """What a user would write by hand; returns seconds."""
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    opt = torch.optim.Adam(model.parameters(), lr=lr, **fast)
    set_train_mode(model, train_bn_stats=False)
    sync(device)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(train), device=device)
        for i in range(0, len(train), batch):
            idx = order[i:i + batch]
            with autocast(device):
                loss = F.cross_entropy(model(train.x[idx]), train.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    sync(device)
    return time.perf_counter() - start


def project_loop(model: torch.nn.Module, train: Split, epochs: int, batch: int, lr: float, device: torch.device) -> float:
    """`autoft_core.finetune` with every multiplier 1; tiny val/test so evaluation does not count."""
    tiny = synthetic(8, device, seed=1)
    data = TaskData(source=tiny, train=train, val=tiny, test=tiny, num_classes=10)
    layers = partition(model, "module")
    cfg = Recipe(epochs=epochs, lr=lr, batch_size=batch)
    sync(device)
    start = time.perf_counter()
    finetune(model, layers, [1.0] * len(layers), data, cfg, device=device)
    sync(device)
    return time.perf_counter() - start


def full_run(model: torch.nn.Module, device: torch.device) -> float:
    """One CIFAR-10-C-sized run: 1,000 train images x 25 epochs, 1,000 val, 10,000 test images."""
    data = TaskData(source=synthetic(8, device), train=synthetic(1000, device), val=synthetic(1000, device, 2),
                    test=synthetic(10_000, device, 3), num_classes=10)
    layers = partition(model, "module")
    sync(device)
    start = time.perf_counter()
    finetune(model, layers, [1.0] * len(layers), data, Recipe(epochs=25, lr=1e-4), device=device)
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("digits", "wrn"), default="digits")
    parser.add_argument("--device", default=None)
    parser.add_argument("--images", type=int, default=None, help="training images per epoch")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = resolve_device(args.device)
    images = args.images or (1024 if args.model == "wrn" and device.type == "cuda" else 448)
    batch = args.batch_size or (128 if args.model == "wrn" else 64)
    model = prepare_model(build(args.model), device)
    train = synthetic(images, device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"model {args.model}, device {name}, {images} images x {args.epochs} epochs, batch {batch}")

    plain_loop(model, train, 1, batch, 1e-4, device)  # warm-up both paths (cuDNN autotune, allocator)
    project_loop(model, train, 1, batch, 1e-4, device)
    plain, project = [], []
    for r in range(args.repeats):
        for which in ((plain_loop, plain), (project_loop, project))[:: 1 if r % 2 == 0 else -1]:
            fn, out = which
            out.append(images * args.epochs / fn(model, train, args.epochs, batch, 1e-4, device))
    p, q = statistics.median(plain), statistics.median(project)
    print(f"plain loop   {p:10.1f} images/s (median of {args.repeats})")
    print(f"project loop {q:10.1f} images/s (median of {args.repeats})")
    ratio = q / p
    verdict = "meets" if ratio >= 0.95 else f"misses by {100 * (0.95 - ratio):.1f} points"
    print(f"ratio        {ratio:10.3f}  (target >= 0.95: {verdict})")
    if device.type == "cuda" and args.model == "wrn":
        peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
        achieved = q * 3 * WRN_FORWARD_FLOP
        if peak:
            mfu = achieved / peak
            print(f"MFU          {100 * mfu:10.1f} %  ({achieved / 1e12:.0f} TFLOP/s of {peak / 1e12:.0f};"
                  f" target >= 35%: {'meets' if mfu >= 0.35 else f'misses by {100 * (0.35 - mfu):.1f} points'})")
        seconds = full_run(model, device)
        print(f"full run     {seconds:10.2f} s   (1000 x 25 epochs + 10,000 test images; target < 10 s)")


if __name__ == "__main__":
    main()
