"""Models as a chain of stages (their forward is the composition), so that a frozen prefix can be
run once instead of every step. The chain comes from the model's adapter (models/adapters.py); models
without one are fine-tuned whole."""
from __future__ import annotations

from torch import nn

from .models.adapters import adapter_for


def model_stages(model: nn.Module) -> list[nn.Module] | None:
    """The model's forward as an ordered list of modules (from its adapter), or None when not known."""
    return adapter_for(model).stages(model)


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
