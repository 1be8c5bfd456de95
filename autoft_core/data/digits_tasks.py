"""The digits setup's tasks and pretrained source models (the heavy half of `setups.digits`).

Source/target pools per shift family, the seeded target splits, and the source ResNets trained on
first use and cached by recipe hash.
"""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from ..core.recipe import Recipe
from ..finetune import finetune
from ..layers import partition
from ..models.digits_net import DigitsResNet
from ..models.weights_cache import cached_model
from ..core.recipe import TaskSpec
from ..threads import fixed_cpu_threads
from .corruptions import corrupt
from .digits import DATASET_SEED, coloured_digits, source_target_split
from ..core.data import Split, TaskData, balanced_indices

TEST_SIZE = 500
VAL_SIZE = 150
PRETRAIN = {"epochs": 30, "lr": 3e-3, "batch_size": 64, "seed": 0, "holdout": 0.1, "cpu_threads": 1}


def _family_data(family: str) -> tuple[Split, Split]:
    """(source, target pool) before any shift: the source/target parts, or digits 0-4 vs 5-9."""
    images, labels = coloured_digits()
    if family == "feature":
        low = labels < 5
        return Split(images[low], labels[low]), Split(images[~low], labels[~low] - 5)
    source_idx, target_idx = source_target_split()
    return Split(images[source_idx], labels[source_idx]), Split(images[target_idx], labels[target_idx])


@lru_cache(maxsize=64)
def task(spec: TaskSpec) -> TaskData:
    """The source sample and target splits of a checked spec (kept in memory)."""
    family = "feature" if spec.shift == "feature" else "standard"
    source, pool = _family_data(family)
    num_classes = 5 if family == "feature" else 10
    if spec.shift == "input":
        pool = Split(corrupt(pool.x, spec.corruption, spec.severity, seed=spec.seed), pool.y)
    elif spec.shift == "output":
        pool = Split(pool.x, 9 - pool.y)
    generator = torch.Generator().manual_seed(spec.seed)
    order = torch.randperm(len(pool), generator=generator)
    test, val, rest = order[:TEST_SIZE], order[TEST_SIZE:TEST_SIZE + VAL_SIZE], order[TEST_SIZE + VAL_SIZE:]
    per_class = max(1, spec.shots // num_classes)
    train = rest[balanced_indices(pool.y[rest], per_class, generator)]
    return TaskData(source=source, train=pool.subset(train), val=pool.subset(val), test=pool.subset(test),
                    num_classes=num_classes)


def _pretrain(model: nn.Module, family: str) -> None:
    """Train from scratch on the source part (all layers, BatchNorm statistics learnt)."""
    source, _ = _family_data(family)
    generator = torch.Generator().manual_seed(DATASET_SEED)
    order = torch.randperm(len(source), generator=generator)
    cut = int(len(source) * PRETRAIN["holdout"])
    held, train = source.subset(order[:cut]), source.subset(order[cut:])
    data = TaskData(source=train, train=train, val=held, test=held, num_classes=model.head.out_features)
    cfg = Recipe(epochs=PRETRAIN["epochs"], lr=PRETRAIN["lr"], batch_size=PRETRAIN["batch_size"],
                 train_bn_stats=True)
    layers = partition(model, "block")
    with fixed_cpu_threads(PRETRAIN["cpu_threads"]):  # the thread count changes the numbers
        finetune(model, layers, [1.0] * len(layers), data, cfg, PRETRAIN["seed"], "cpu")


def _initial_model(classes: int) -> DigitsResNet:
    """The untrained network, its initial weights drawn from the recipe's seed (not whatever the global RNG holds)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(PRETRAIN["seed"])
        return DigitsResNet(num_classes=classes)


@lru_cache(maxsize=2)
def _pretrained_state(family: str) -> dict[str, torch.Tensor]:
    recipe = {"data": "sklearn-digits-coloured", "dataset_seed": DATASET_SEED, "family": family,
              "model": "DigitsResNet(width=16)", **PRETRAIN}
    classes = 5 if family == "feature" else 10
    model = cached_model(f"digits-{family}", recipe, lambda: _initial_model(classes), lambda m: _pretrain(m, family))
    return {k: v.clone() for k, v in model.state_dict().items()}


def pretrained(family: str) -> nn.Module:
    """A fresh copy of the pretrained source model of a shift family (standard or feature)."""
    model = DigitsResNet(num_classes=5 if family == "feature" else 10)
    model.load_state_dict(_pretrained_state(family))
    return model.eval()
