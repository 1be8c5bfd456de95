"""The one small interface every weighting method implements, and what it is given.

A method turns (pretrained model, its layers, source and target data, hyper-parameters) into raw
per-layer scores and the multipliers alpha_l. Methods that act during training (Auto-RGN) also return
a `Reweighter`; methods that change the procedure itself (cross-validation, LP-FT) override `run`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..core.data import TaskData
from ..core.recipe import Recipe
from ..finetune import FinetuneResult, Progress, Reweighter, finetune
from ..layers import Layer
from ..method_catalogue import Param, grid_of, resolve_given


@dataclass
class MethodContext:
    """Everything a method may use. The model must be left exactly as it was given."""

    model: nn.Module
    layers: list[Layer]
    data: TaskData
    params: dict[str, Any]
    recipe: Recipe
    seed: int
    device: torch.device
    progress: Progress | None = None
    status: Callable[[str], None] | None = None  # short human-readable notes on long steps

    def note(self, message: str) -> None:
        """Tell the caller what the method is doing (the dashboard's status box; nothing without one)."""
        if self.status is not None:
            self.status(message)


@dataclass
class LayerWeights:
    """Raw per-layer scores and the multipliers derived from them (plus anything worth showing)."""

    scores: list[float]
    weights: list[float]
    extras: dict[str, Any] = field(default_factory=dict)


class Method(ABC):
    """Base class: subclasses set `name`, `summary`, `params` and implement `weights`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    params: ClassVar[dict[str, Param]] = {}
    one_hot: ClassVar[bool] = False  # multipliers pick one block (cross-validation)
    order: ClassVar[int] = 100  # position in listings (lower first)

    @classmethod
    def resolve_params(cls, given: dict[str, object] | None) -> dict[str, Any]:
        """Defaults overlaid with `given`, each parsed; unknown keys raise BadArgumentError."""
        return resolve_given(cls.name, cls.params, given)

    @classmethod
    def grid(cls) -> dict[str, tuple]:
        """The hyper-parameters this method declares as a grid, with the values a grid run tries."""
        return grid_of(cls.params)

    @abstractmethod
    def weights(self, ctx: MethodContext) -> LayerWeights:
        """Per-layer scores and multipliers for this model and task."""

    def reweighter(self, ctx: MethodContext, chosen: LayerWeights) -> Reweighter | None:
        """A hook re-weighting the multipliers during fine-tuning, if the method has one; `chosen` is what
        `weights` gave for the untouched model, so a hook need not compute it again for the first epoch."""
        return None

    def run(self, ctx: MethodContext) -> tuple[LayerWeights, FinetuneResult]:
        """Weights, then fine-tuning with them; the model in `ctx` is fine-tuned in place."""
        chosen = self.weights(ctx)
        result = finetune(ctx.model, ctx.layers, chosen.weights, ctx.data, ctx.recipe, ctx.seed, ctx.device,
                          self.reweighter(ctx, chosen), ctx.progress)
        return chosen, result
