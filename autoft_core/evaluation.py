"""Accuracy and parameter-change metrics, computed in large no-grad batches on the model's device.

`cached_accuracy` remembers the accuracy of a model state on a split, keyed by their contents (digests of
the state dict and of the split's tensors, digest.py), so the pretrained model's zero-shot accuracy is computed
once per task and reused by every method and every cross-validation candidate in the process.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from .core.data import Split
from .device import autocast
from .digest import tensor_digest
from .layers import Layer

# Images per evaluation batch: a power of two keeping a batch's input within this many values, clamped.
# On the CPU batches beyond a few hundred small images run slower per image (the activations leave the
# caches: the digits net takes 0.30 ms per image at 1024 against 0.18 at 128); on CUDA large batches fill the GPU.
EVAL_ELEMENTS = {"cpu": 2**19, "cuda": 2**27}
EVAL_BATCH = 1024  # the largest CPU batch (methods/_probes.py still batches by it; `eval_batch` is better)
EVAL_BATCH_RANGE = {"cpu": (8, EVAL_BATCH), "cuda": (8, 4096)}
ACCURACY_CACHE_SIZE = 256

_accuracies: OrderedDict[tuple, float] = OrderedDict()


def eval_batch(x: torch.Tensor, device: torch.device) -> int:
    """Images per evaluation batch for inputs like `x` on `device` (128 CIFAR-sized images on the CPU,
    4096 on CUDA; 512 at 224 px on CUDA)."""
    kind = "cuda" if device.type == "cuda" else "cpu"
    low, high = EVAL_BATCH_RANGE[kind]
    fits = EVAL_ELEMENTS[kind] // max(1, math.prod(x.shape[1:]))
    return max(low, min(high, 2 ** int(math.log2(max(1, fits)))))


@torch.inference_mode()
def accuracy(model: nn.Module, split: Split, batch_size: int | None = None) -> float:
    """Top-1 accuracy of `model` (put in eval mode) on `split`; one host sync at the end."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    batch_size = batch_size or eval_batch(split.x, device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    with autocast(device):
        for start in range(0, len(split), batch_size):
            x = split.x[start:start + batch_size].to(device, non_blocking=True)
            y = split.y[start:start + batch_size].to(device, non_blocking=True)
            correct += (model(x).argmax(dim=1) == y).sum()
    model.train(was_training)
    return correct.item() / max(len(split), 1)


def cached_accuracy(model_key: str, split: Split, device: torch.device, compute: Callable[[], float]) -> float:
    """The accuracy of the model state `model_key` (`digest.model_digest`) on `split` on this kind of device:
    remembered, or `compute()` (e.g. the rest of the network on a frozen prefix's features: the same
    number as the whole model on the images)."""
    key = (model_key, tensor_digest(split.x), tensor_digest(split.y), device.type)
    if key in _accuracies:
        _accuracies.move_to_end(key)
        return _accuracies[key]
    value = _accuracies[key] = compute()
    if len(_accuracies) > ACCURACY_CACHE_SIZE:
        _accuracies.popitem(last=False)
    return value


def clear_accuracy_cache() -> None:
    """Forget every remembered accuracy (benchmarks clear it so each run pays its own evaluation)."""
    _accuracies.clear()


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
