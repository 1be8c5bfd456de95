"""Accuracy and parameter-change metrics, computed in large no-grad batches on the model's device."""
from __future__ import annotations

import torch
from torch import nn

from .core.data import Split
from .device import autocast
from .layers import Layer

EVAL_BATCH = 1024


@torch.inference_mode()
def accuracy(model: nn.Module, split: Split, batch_size: int = EVAL_BATCH) -> float:
    """Top-1 accuracy of `model` (put in eval mode) on `split`; one host sync at the end."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = torch.zeros((), dtype=torch.long, device=device)
    with autocast(device):
        for start in range(0, len(split), batch_size):
            x = split.x[start:start + batch_size].to(device, non_blocking=True)
            y = split.y[start:start + batch_size].to(device, non_blocking=True)
            correct += (model(x).argmax(dim=1) == y).sum()
    model.train(was_training)
    return correct.item() / max(len(split), 1)


def flat_layer_params(model: nn.Module, layers: list[Layer]) -> list[torch.Tensor]:
    """Each layer's parameters concatenated into one detached vector (a snapshot when cloned)."""
    named = dict(model.named_parameters())
    return [torch.cat([named[p].detach().flatten().float() for p in layer.param_names]) for layer in layers]


def param_change(model: nn.Module, layers: list[Layer], initial: list[torch.Tensor]) -> list[float]:
    """‖θ_ft − θ_0‖ / ‖θ_0‖ per layer, against the snapshot `initial` taken before fine-tuning."""
    now = flat_layer_params(model, layers)
    ratios = torch.stack([torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-12)
                          for a, b in zip(now, initial)])
    return ratios.cpu().tolist()
