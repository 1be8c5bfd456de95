"""The Newton-step methods' curvature products with the project's convolution backward
(`methods/_curvature.masked_conv_backward`) against PyTorch's own double backward, which computes a
weight gradient for every convolution above the product's layer and the input gradient of the layer's
own convolution whatever the autograd engine asks for.

For the digits setup's source model and a probe sample of the method's size (or WRN-28-10 with random
weights and data, `--model wrn`), it checks that both give the same gradients and products (to fp32
rounding: ours also folds each BatchNorm that alone reads a convolution into it), then times,
alternated: the products alone (every layer, `--iterations` each) and one whole damped Newton solve
(graph, Lanczos, step), each as baseline = PyTorch's double backward and project = ours. Then the same for
the products local to each layer (`methods/_local_curvature`, what the methods use where the model allows
it) against ours: the same products to fp32 rounding, and their times. One thread and CPU time on the CPU,
synchronised wall time on CUDA.

    python bench/curvature.py [--repeats 15] [--kind hessian]
    python bench/curvature.py --model wrn --device cuda --examples 64
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.throughput import build, synthetic  # noqa: E402
from bench.timing import alternate, clock  # noqa: E402
from autoft_core.config import RunConfig  # noqa: E402
from autoft_core.core.data import Split  # noqa: E402
from autoft_core.device import resolve_device  # noqa: E402
from autoft_core.experiment import load_task, resolve  # noqa: E402
from autoft_core.layers import layer_parameters, partition  # noqa: E402
from autoft_core.methods import _curvature  # noqa: E402
from autoft_core.methods._local_curvature import LocalCurvature  # noqa: E402
from autoft_core.methods._common import full_precision, probe_mode, seeded_sample  # noqa: E402

OURS = _curvature.masked_conv_backward


@contextmanager
def native() -> object:
    """Inside: the curvature graphs use PyTorch's own convolution backward."""
    _curvature.masked_conv_backward = lambda model, grads, example: nullcontext()
    try:
        yield
    finally:
        _curvature.masked_conv_backward = OURS


def _model_and_sample(name: str, examples: int, device: torch.device) -> tuple[torch.nn.Module, Split]:
    """The digits source model on its output-shift task's training sample, or a random WRN-28-10."""
    if name == "digits":
        cfg = resolve(RunConfig(setup="digits", shift="output"))
        setup, data = load_task(cfg)
        sample = seeded_sample(data.train, examples, 0)
        return setup.source_model(cfg.shift).to(device), Split(sample.x.to(device), sample.y.to(device))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build("wrn").eval()
    return model.to(device), synthetic(examples, device, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("digits", "wrn"), default="digits")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--examples", type=int, default=64, help="probe sample size (the methods' default: 64)")
    parser.add_argument("--kind", choices=_curvature.CURVATURES, default="hessian")
    parser.add_argument("--iterations", type=int, default=5, help="products per layer (the methods' default: 5)")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.set_num_threads(1)
    now = clock(device)
    model, sample = _model_and_sample(args.model, args.examples, device)
    layers = partition(model)
    params = layer_parameters(model, layers)
    where = f"{torch.cuda.get_device_name(device)}, wall time" if device.type == "cuda" else "1 thread, CPU time"
    print(f"{args.model}, {len(layers)} layers, {args.examples} examples, {args.kind}, {args.iterations} "
          f"products per layer, {where}, {args.repeats} alternated pairs")
    g = torch.Generator().manual_seed(1)
    vectors = [torch.randn(sum(p.numel() for p in group), generator=g).to(device) for group in params]
    with probe_mode(model), full_precision():
        ours = _curvature.BlockCurvature(model, params, sample, args.kind)
        with native():
            theirs = _curvature.BlockCurvature(model, params, sample, args.kind)
        gaps = []
        for l, v in enumerate(vectors):
            a, b = ours.product(l, v), theirs.product(l, v)
            gaps.append(float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)))
        grads = max(float((a - b).abs().max()) for a, b in zip(ours.grads, theirs.grads))
        print(f"largest difference: gradients {grads:.1e} (absolute), products {max(gaps):.1e} (relative)")

        def products(curvature: _curvature.BlockCurvature | LocalCurvature) -> Callable[[], float]:
            def run() -> float:
                start = now()
                for _ in range(args.iterations):
                    for l, v in enumerate(vectors):
                        curvature.product(l, v)
                return now() - start
            return run

        def solve(build: Callable[[], _curvature.BlockCurvature | LocalCurvature],
                  use_native: bool = False) -> Callable[[], float]:
            def run() -> float:
                with native() if use_native else nullcontext():
                    start = now()
                    _curvature.newton_steps(build(), args.iterations, 0.1)
                    return now() - start
            return run

        def block() -> _curvature.BlockCurvature:
            return _curvature.BlockCurvature(model, params, sample, args.kind)

        print(alternate("products", products(theirs), products(ours), args.repeats).report(1.0))
        print(alternate("one Newton solve", solve(block, True), solve(block), args.repeats).report(1.0))
        local = LocalCurvature.build(model, params, sample, args.kind)
        if local is None:
            print("local products: not for this model and sample (methods/_local_curvature); the methods use ours")
            return
        gaps = [float((local.product(l, v) - ours.product(l, v)).norm() / ours.product(l, v).norm())
                for l, v in enumerate(vectors)]
        print(f"local products against ours: largest relative difference {max(gaps):.1e}; "
              "baseline = ours, project = local")

        def build_local() -> LocalCurvature:
            return LocalCurvature.build(model, params, sample, args.kind)

        print(alternate("products, local", products(ours), products(local), args.repeats).report(1.0))
        print(alternate("one Newton solve, local", solve(block), solve(build_local), args.repeats).report(1.0))


if __name__ == "__main__":
    main()
