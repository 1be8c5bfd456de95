"""Helpers shared by the weighting methods (kept apart from the methods themselves)."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ..core.data import Split
from ..device import autocast


def normalise_by_max(scores: Sequence[float]) -> list[float]:
    """Scores divided by the largest, so the top layer gets multiplier 1 (all zeros stay zeros)."""
    values = torch.as_tensor(list(scores), dtype=torch.float64).clamp_min(0.0)
    top = values.max()
    return (values / top).tolist() if top > 0 else [0.0] * len(values)


def minibatches(split: Split, n_batches: int, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`n_batches` seeded minibatches (without replacement while the split lasts) from `split`."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(split), generator=generator).to(split.x.device)
    for b in range(n_batches):
        idx = order[(b * batch_size) % len(split):][:batch_size]
        if len(idx) == 0:
            return
        yield split.x[idx], split.y[idx]


def mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of `model` on one batch, under the device's autocast."""
    with autocast(x.device):
        return F.cross_entropy(model(x), y)


@contextmanager
def restored(model: nn.Module) -> Iterator[nn.Module]:
    """Run a probe on `model`, then put back every parameter, buffer and the train/eval mode exactly."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    mode = model.training
    try:
        yield model
    finally:
        model.load_state_dict(state)
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
            p.grad = None
        model.train(mode)
