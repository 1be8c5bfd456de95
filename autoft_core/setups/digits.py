"""The embedded default: coloured scikit-learn digits with all three shifts, no download needed.

- input: the target part with one of the 14 CIFAR-10-C corruptions at severity 1-5;
- feature: a BREEDS analogue: five superclasses {d, d+5}; the source sees digits 0-4, the target 5-9;
- output: the label flip y -> 9 - y (digits-F, like CIFAR-10F).
Source models are pretrained here on first use (well under a minute on a laptop CPU) and cached.
Pretraining and runs use one intra-op CPU thread, so the numbers do not depend on the core count.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.recipe import Recipe, TaskSpec
from .base import Setup

if TYPE_CHECKING:  # the tasks module imports torch, scikit-learn and the corruptions: loaded on first use
    from torch import nn

    from ..core.data import TaskData


class DigitsSetup(Setup):
    """Coloured 32x32 digits; a small ResNet pretrained on the source part."""

    name = "digits"
    description = "Embedded: scikit-learn handwritten digits, coloured, 32x32x3 (no download)"
    recipe = Recipe(shots=1000, epochs=15, lr=1e-3, batch_size=64)
    cpu_threads = 1  # the same numbers on every CPU (a small net: threads gain little)

    def missing(self) -> list[str]:
        return []

    def task(self, spec: TaskSpec) -> "TaskData":
        from ..data import digits_tasks

        return digits_tasks.task(self.check(spec))

    def source_model(self, shift: str) -> "nn.Module":
        from ..data import digits_tasks

        return digits_tasks.pretrained("feature" if shift == "feature" else "standard")
