"""The embedded default: coloured scikit-learn digits with all three shifts, no download needed.

- input: the target part with one of the 14 CIFAR-10-C corruptions at severity 1-5;
- feature: a BREEDS analogue: five superclasses {d, d+5}; the source sees digits 0-4, the target 5-9;
- output: the label flip y -> 9 - y (digits-F, like CIFAR-10F).
Source models are pretrained here on first use (well under a minute on a laptop CPU) and cached.
"""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from ..data.corruptions import corrupt
from ..data.digits import DATASET_SEED, coloured_digits, source_target_split
from ..data.task import Split, TaskData, balanced_indices
from ..finetune import FinetuneConfig, finetune
from ..layers import partition
from ..models.digits_net import DigitsResNet
from ..models.weights_cache import cached_model
from .base import Defaults, Setup, TaskSpec

TEST_SIZE = 500
VAL_SIZE = 150
PRETRAIN = {"epochs": 30, "lr": 3e-3, "batch_size": 64, "seed": 0, "holdout": 0.1}


class DigitsSetup(Setup):
    """Coloured 32x32 digits; a small ResNet pretrained on the source part."""

    name = "digits"
    description = "Embedded: scikit-learn handwritten digits, coloured, 32x32x3 (no download)"
    defaults = Defaults(shots=1000, epochs=15, lr=1e-3, batch_size=64)

    def missing(self) -> list[str]:
        return []

    def task(self, spec: TaskSpec) -> TaskData:
        spec = self.check(spec)
        return _task(spec)

    def source_model(self, shift: str) -> nn.Module:
        family = "feature" if shift == "feature" else "standard"
        return _pretrained(family)


def _family_data(family: str) -> tuple[Split, Split]:
    """(source, target pool) before any shift: the source/target parts, or digits 0-4 vs 5-9."""
    images, labels = coloured_digits()
    if family == "feature":
        low = labels < 5
        return Split(images[low], labels[low]), Split(images[~low], labels[~low] - 5)
    source_idx, target_idx = source_target_split()
    return Split(images[source_idx], labels[source_idx]), Split(images[target_idx], labels[target_idx])


@lru_cache(maxsize=64)
def _task(spec: TaskSpec) -> TaskData:
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
    cfg = FinetuneConfig(epochs=PRETRAIN["epochs"], lr=PRETRAIN["lr"], batch_size=PRETRAIN["batch_size"],
                         train_bn_stats=True, seed=PRETRAIN["seed"], device="cpu")
    layers = partition(model, "block")
    finetune(model, layers, [1.0] * len(layers), data, cfg)


@lru_cache(maxsize=2)
def _pretrained_state(family: str) -> dict[str, torch.Tensor]:
    recipe = {"data": "sklearn-digits-coloured", "dataset_seed": DATASET_SEED, "family": family,
              "model": "DigitsResNet(width=16)", **PRETRAIN}
    classes = 5 if family == "feature" else 10
    model = cached_model(f"digits-{family}", recipe, lambda: DigitsResNet(num_classes=classes),
                         lambda m: _pretrain(m, family))
    return {k: v.clone() for k, v in model.state_dict().items()}


def _pretrained(family: str) -> nn.Module:
    model = DigitsResNet(num_classes=5 if family == "feature" else 10)
    model.load_state_dict(_pretrained_state(family))
    return model.eval()
