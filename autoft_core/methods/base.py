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

from ..data.task import TaskData
from ..errors import BadArgumentError
from ..finetune import FinetuneConfig, FinetuneResult, Progress, Reweighter, finetune
from ..layers import Layer


@dataclass(frozen=True)
class Param:
    """A method hyper-parameter: its default, type, help, optional choices and bounds (inclusive)."""

    default: Any
    help: str
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None

    def parse(self, name: str, raw: object) -> Any:
        """Convert `raw` (often a CLI string) to this parameter's type, or raise BadArgumentError."""
        kind = type(self.default)
        try:
            if kind is bool and isinstance(raw, str):
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                value: Any = raw.lower() in ("true", "1", "yes")
            elif kind is int and isinstance(raw, str) and raw == "all" and self.choices is None:
                value = 0  # 0 means "all" for count-like parameters (documented in their help)
            else:
                value = kind(raw)
        except (TypeError, ValueError):
            raise BadArgumentError(f"value for {name}", raw, f"a {kind.__name__} ({self.help})") from None
        if self.choices is not None and value not in self.choices:
            raise BadArgumentError(f"value for {name}", raw, self.choices)
        if (self.minimum is not None and not value >= self.minimum) or (
                self.maximum is not None and not value <= self.maximum):
            low = "" if self.minimum is None else f">= {self.minimum:g}"
            high = "" if self.maximum is None else f"<= {self.maximum:g}"
            raise BadArgumentError(f"value for {name}", raw, f"a {kind.__name__} {' and '.join(filter(None, (low, high)))}")
        return value


@dataclass
class MethodContext:
    """Everything a method may use. The model must be left exactly as it was given."""

    model: nn.Module
    layers: list[Layer]
    data: TaskData
    params: dict[str, Any]
    finetune_cfg: FinetuneConfig
    device: torch.device
    progress: Progress | None = None
    status: Callable[[str], None] | None = None  # short human-readable notes on long steps

    def note(self, message: str) -> None:
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
        given = dict(given or {})
        unknown = sorted(set(given) - set(cls.params))
        if unknown:
            valid = ", ".join(f"{k} (default {p.default})" for k, p in cls.params.items()) or "none"
            raise BadArgumentError(f"parameter for method {cls.name}", unknown[0], valid)
        return {k: p.parse(k, given[k]) if k in given else p.default for k, p in cls.params.items()}

    @abstractmethod
    def weights(self, ctx: MethodContext) -> LayerWeights:
        """Per-layer scores and multipliers for this model and task."""

    def reweighter(self, ctx: MethodContext) -> Reweighter | None:
        """A hook re-weighting the multipliers during fine-tuning, if the method has one."""
        return None

    def run(self, ctx: MethodContext) -> tuple[LayerWeights, FinetuneResult]:
        """Weights, then fine-tuning with them; the model in `ctx` is fine-tuned in place."""
        chosen = self.weights(ctx)
        result = finetune(ctx.model, ctx.layers, chosen.weights, ctx.data, ctx.finetune_cfg,
                          self.reweighter(ctx), ctx.progress)
        return chosen, result
