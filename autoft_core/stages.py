"""Models as a chain of stages (their forward is the composition), so that a frozen prefix can be
run once instead of every step. The chain comes from the model's adapter (models/adapters.py); models
without one are fine-tuned whole. The prefix's features are cached only when that saves work
(`prefix_cache_pays`) and fits in a quarter of the free memory (`feature_budget`), in the dtype the
prefix emits: fp32 on the CPU, bf16 under CUDA autocast (WRN-28-10's stem+block1 features take
320 KiB per image, 3.9 GB for a CIFAR-10-C task of 1,000 + 1,000 + 10,000 images)."""
from __future__ import annotations

import os

import torch
from torch import nn

from .models.adapters import adapter_for

PAYS_MARGIN = 1.25
FEATURE_MEMORY_SHARE = 0.25


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
        if any(p not in frozen_params for p in params) or _drops_out(stage):
            break
        k += 1
    if k == 0:
        return None
    return nn.Sequential(*stages[:k]), nn.Sequential(*stages[k:])


def _drops_out(stage: nn.Module) -> bool:
    """Whether the stage applies dropout in training (a cached prefix would not): an nn.Dropout, or a positive
    `droprate` (RobustBench's WideResNet blocks call F.dropout with it)."""
    return any(isinstance(m, nn.Dropout) or getattr(m, "droprate", 0) > 0 for m in stage.modules())


def prefix_cache_pays(epochs: int, n_train: int, n_val: int, n_test: int) -> bool:
    """Whether running a frozen prefix once over every split beats running it inside the run. Its cost
    per image is the same either way, so this counts images: without the cache the prefix sees the
    training set and the validation set every epoch and the test set at least once; with it, each split
    once, plus PAYS_MARGIN for writing and gathering the larger features (so never for one epoch)."""
    without = epochs * (n_train + n_val) + n_test
    return without > PAYS_MARGIN * (n_train + n_val + n_test)


def feature_budget(device: torch.device) -> int:
    """Bytes the cached prefix features may take: FEATURE_MEMORY_SHARE of the device's free memory (on the
    CPU, of the available physical memory)."""
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(FEATURE_MEMORY_SHARE * free)
