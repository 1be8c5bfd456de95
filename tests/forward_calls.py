"""The layer tests' independent picture of a network: which modules one forward pass calls, in order (hooks
on a dummy batch, not the partition's own rule of registration order)."""
from __future__ import annotations

import torch
from torch import nn


def called_in_order(model: nn.Module, example: torch.Tensor, kinds: tuple[type, ...]) -> list[tuple[str, nn.Module]]:
    """(name, module) of each call of a module of `kinds` during `model(example)`, in the order they run."""
    calls: list[tuple[str, nn.Module]] = []
    hooks = [m.register_forward_pre_hook(lambda m, args, name=name: calls.append((name, m)))
             for name, m in model.named_modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for hook in hooks:
            hook.remove()
    return calls


def norms_after_weighted(model: nn.Module, example: torch.Tensor,
                         norms: tuple[type, ...]) -> tuple[list[str], dict[str, str | None]]:
    """The Conv2d/Linear modules in call order, and for each norm module the Conv2d/Linear called last
    before it (None: none yet), the one whose output it normalises (or, pre-activation, the block's)."""
    weighted, last_before = [], {}
    latest = None
    for name, module in called_in_order(model, example, (nn.Conv2d, nn.Linear, *norms)):
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            weighted.append(name)
            latest = name
        else:
            last_before[name] = latest
    return weighted, last_before
