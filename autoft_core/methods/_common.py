"""Helpers shared by the weighting methods (kept apart from the methods themselves)."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..core.data import Split
from ..evaluation import clone_state, load_state
from ..layers import Layer


def seeded_sample(split: Split, n: int, seed: int) -> Split:
    """The first `n` examples of a `seed`-ed permutation of `split` (all of them, permuted, when n is 0
    or too big); equal splits and seeds give equal samples, and a larger n extends a smaller one's."""
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed)).to(split.x.device)
    return split.subset(order[:n] if n > 0 else order)


@contextmanager
def full_precision() -> Iterator[None]:
    """True fp32 inside, as gradient and curvature probes need: any surrounding autocast disabled and
    CUDA's TF32 matmuls / convolutions off (process-wide flags, put back on exit)."""
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


@contextmanager
def restored(model: nn.Module) -> Iterator[nn.Module]:
    """Run a probe on `model`, then put back every parameter, buffer and the train/eval mode exactly."""
    state = clone_state(model)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    mode = model.training
    try:
        yield model
    finally:
        load_state(model, state)
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
            p.grad = None
        model.train(mode)


@contextmanager
def probe_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode (BatchNorm uses and keeps its running statistics) with every parameter differentiable;
    afterwards the train/eval mode and requires_grad flags are put back and no .grad is left. For
    probes that read the model without changing a weight (no state copy needed)."""
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    mode = model.training
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    try:
        yield model
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
            p.grad = None
        model.train(mode)


def per_layer(layers: Sequence[Layer], **columns: Sequence[Any]) -> list[dict[str, Any]]:
    """One record per layer (a table on the dashboard): its name and each column's value."""
    return [{"layer": layer.name, **{k: v[i] for k, v in columns.items()}} for i, layer in enumerate(layers)]
