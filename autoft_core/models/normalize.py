"""Input normalisation put inside a model, so every setup hands models [0, 1] images (corruptions act
on those) and parameter names stay the model's own (no wrapper prefix in layer names or checkpoints).

`normalized(model, mean, std)` switches the model to a subclass of its own class whose forward
normalises first; the engine still finds the original class's adapter (by the class's MRO), and a
forward chain (stages) gets the normalisation as its first stage.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
from torch import nn

from .adapters import adapter_for, register_adapter


class Normalize(nn.Module):
    """(x - mean) / std per channel; the constants are buffers that checkpoints do not store."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@lru_cache(maxsize=None)
def _normalized_class(base: type[nn.Module]) -> type[nn.Module]:
    """`base` with a forward (and declared stages) that normalise first."""
    def forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return base.forward(self, self.autoft_normalize(x))

    body = {"forward": forward, "__doc__": f"{base.__name__} normalising its input first."}
    if hasattr(base, "autoft_stages"):
        body["autoft_stages"] = lambda self: [self.autoft_normalize, *base.autoft_stages(self)]
    return type(f"Normalized{base.__name__}", (base,), body)


def normalized(model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    """`model` itself, now normalising its input with `mean` and `std` before its own forward."""
    base = type(model)
    adapter = adapter_for(model)
    model.__class__ = _normalized_class(base)
    model.autoft_normalize = Normalize(mean, std)
    if not hasattr(base, "autoft_stages") and adapter.stages(model) is not None:  # a registered chain
        register_adapter(model.__class__, adapter.blocks, lambda m: [m.autoft_normalize, *adapter.stages(m)],
                         adapter.modules)
    return model
