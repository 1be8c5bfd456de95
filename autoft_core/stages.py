"""Models as a chain of stages (their forward is the composition), so that a frozen prefix can be
run once instead of every step. Known for the digits ResNet and RobustBench's WRN-28-10; other
models return None and are fine-tuned whole."""
from __future__ import annotations

import torch
from torch import nn


class _WrnTail(nn.Module):
    """RobustBench WRN-28-10 after block3: relu(bn1), 8x8 average pool, flatten (the head is separate)."""

    def __init__(self, wrn: nn.Module) -> None:
        super().__init__()
        self.bn1, self.relu, self.channels = wrn.bn1, wrn.relu, wrn.nChannels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(self.relu(self.bn1(x)), 8).view(-1, self.channels)


def model_stages(model: nn.Module) -> list[nn.Module] | None:
    """The model's forward as an ordered list of modules, or None when not known."""
    if hasattr(model, "autoft_stages"):
        return list(model.autoft_stages())
    if type(model).__name__ == "WideResNet" and hasattr(model, "block3"):
        return [model.conv1, model.block1, model.block2, model.block3, _WrnTail(model), model.fc]
    return None


def frozen_prefix(model: nn.Module, frozen_params: set[str]) -> tuple[nn.Sequential, nn.Sequential] | None:
    """(prefix, rest) where the prefix is the longest run of stages whose parameters are all frozen,
    has no dropout and keeps no state that training would change; None when there is no such prefix."""
    stages = model_stages(model)
    if not stages:
        return None
    owner = {id(p): name for name, p in model.named_parameters()}
    k = 0
    for stage in stages[:-1]:
        params = [owner[id(p)] for p in stage.parameters()]
        if any(p not in frozen_params for p in params) or any(isinstance(m, nn.Dropout) for m in stage.modules()):
            break
        k += 1
    if k == 0:
        return None
    return nn.Sequential(*stages[:k]), nn.Sequential(*stages[k:])
