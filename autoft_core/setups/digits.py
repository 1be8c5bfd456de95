"""The embedded default: scikit-learn's digit glyphs rendered as CIFAR-like colour images, no download needed.

- input: the target half's renders under one of the 14 CIFAR-10-C corruptions at severity 1-5;
- feature: a BREEDS analogue: five superclasses {d, d+5}; the source sees digits 0-4, the target 5-9;
- output: the label flip y -> 9 - y (digits-F, like CIFAR-10F).
The setup owns its source models: a small ResNet per shift family, trained from scratch on the family's
source sample through `finetune()` on first use (one CPU thread, under a minute) and cached by recipe.
`shots` counts images: it is rounded down to whole shots per class (at least 1, at most the pool's
training pool), and the effective count is what `check` returns, so what is stored is what is used.
"""
from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING

from ..core.recipe import Recipe, TaskSpec
from .base import Setup

if TYPE_CHECKING:  # torch, scikit-learn and the corruptions load on first task, so the class stays light
    from torch import nn

    from ..core.data import TaskData

CLASSES = {"standard": 10, "feature": 5}
# (test, validation, training) images per class of every target task: 1,000 each way in both families
PER_CLASS = {"standard": (100, 100, 100), "feature": (200, 200, 200)}
WIDTH = 8  # DigitsResNet channels in its first stage
FEATURES = 32  # the head's inputs: a bottleneck narrow enough that a new head alone cannot undo a low-level shift
PRETRAIN = {"epochs": 5, "lr": 3e-3, "batch_size": 64, "seed": 0, "holdout": 0.1, "threads": 1}


def _family(shift: str) -> str:
    return "feature" if shift == "feature" else "standard"


class DigitsSetup(Setup):
    """Rendered 32x32 colour digits; a small ResNet pretrained on the source half."""

    name = "digits"
    description = "Embedded: scikit-learn digit glyphs rendered as CIFAR-like 32x32 colour images (no download)"
    recipe = Recipe(shots=500, epochs=6, lr=3e-3, batch_size=16)
    cpu_threads = 1  # the same numbers whatever the core count (a small net: threads gain little)

    def missing(self) -> list[str]:
        return []

    def check(self, spec: TaskSpec) -> TaskSpec:
        """The base checks, with shots made effective: whole shots per class, within what the pool holds."""
        spec = super().check(spec)
        classes, (_, _, most) = CLASSES[_family(spec.shift)], PER_CLASS[_family(spec.shift)]
        return replace(spec, shots=min(max(1, spec.shots // classes), most) * classes)

    def pool_counts(self, spec: TaskSpec) -> list[int]:
        """Every class of every digits pool holds the same number of training candidates (`PER_CLASS`)."""
        family = _family(self.check(spec).shift)
        return [PER_CLASS[family][2]] * CLASSES[family]

    def task(self, spec: TaskSpec) -> "TaskData":
        from ..data import digits_tasks

        spec = self.check(spec)
        family = _family(spec.shift)
        return digits_tasks.task(spec.shift, spec.corruption, spec.severity, PER_CLASS[family],
                                 spec.shots // CLASSES[family], spec.seed)

    def _source_model(self, shift: str) -> "nn.Module":
        from ..models.digits_net import DigitsResNet

        family = _family(shift)
        model = DigitsResNet(num_classes=CLASSES[family], width=WIDTH, features=FEATURES)
        model.load_state_dict(_pretrained_state(family))
        return model.eval()


def pretrain_recipe(family: str) -> dict:
    """Everything that determines a source model's weights (its cache key)."""
    from ..data import digits

    return {"data": "sklearn-digit-glyphs-rendered", "dataset_seed": digits.DATASET_SEED,
            "style": repr(digits.STYLE), "per_digit": digits.PER_DIGIT, "family": family,
            "model": f"DigitsResNet(width={WIDTH}, features={FEATURES})", **PRETRAIN}


def pretrain(model: "nn.Module", family: str) -> None:
    """Train from scratch on the family's source sample (all layers, BatchNorm statistics learnt), on
    PRETRAIN["threads"] CPU threads whatever the machine, so the weights do not depend on it."""
    from ..data.digits_tasks import source_and_pool
    from ..finetune import finetune
    from ..layers import partition
    from ..threads import fixed_cpu_threads
    from .source_training import holdout_task

    source, _ = source_and_pool(family)
    data = holdout_task(source, CLASSES[family], PRETRAIN["seed"], PRETRAIN["holdout"])
    cfg = Recipe(epochs=PRETRAIN["epochs"], lr=PRETRAIN["lr"], batch_size=PRETRAIN["batch_size"],
                 train_bn_stats=True, granularity="block")
    layers = partition(model, "block")
    with fixed_cpu_threads(PRETRAIN["threads"]):
        finetune(model, layers, [1.0] * len(layers), data, cfg, PRETRAIN["seed"], "cpu")


def _initial_model(family: str) -> "nn.Module":
    """The untrained network, its initial weights drawn from the recipe's seed (not the global RNG's state)."""
    import torch

    from ..models.digits_net import DigitsResNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(PRETRAIN["seed"])
        return DigitsResNet(num_classes=CLASSES[family], width=WIDTH, features=FEATURES)


@lru_cache(maxsize=len(CLASSES))
def _pretrained_state(family: str) -> dict:
    """The family's source weights: from the model cache, or trained now and cached."""
    from ..models.weights_cache import cached_model

    model = cached_model(f"digits-{family}", pretrain_recipe(family), lambda: _initial_model(family),
                         lambda m: pretrain(m, family))
    return {k: v.clone() for k, v in model.state_dict().items()}
