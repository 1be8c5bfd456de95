"""One interface for every setup (a data set, its three shifts, and the pretrained source model)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import BadArgumentError
from ..paths import DataPaths

if TYPE_CHECKING:  # torch stays out of the import path of the CLI's cache-hit answer
    from torch import nn

    from ..data.task import TaskData

SHIFTS = ("input", "feature", "output")

CORRUPTIONS = (
    "frost", "gaussian_blur", "gaussian_noise", "glass_blur", "impulse_noise", "jpeg_compression",
    "motion_blur", "pixelate", "saturate", "shot_noise", "snow", "spatter", "speckle_noise", "zoom_blur",
)


@dataclass(frozen=True)
class Defaults:
    """A setup's default fine-tuning recipe (the CLI and dashboard start from it)."""

    shots: int
    epochs: int
    lr: float
    batch_size: int = 64


@dataclass(frozen=True)
class TaskSpec:
    """What target task to build: the shift, its corruption/severity (input-level only), shots, seed."""

    shift: str
    corruption: str | None = None
    severity: int = 5
    shots: int | None = None
    seed: int = 0


class Setup(ABC):
    """A data set with its shifts and pretrained source model; subclasses register in `setups.registry`."""

    name: str
    description: str
    shifts: tuple[str, ...] = SHIFTS
    defaults: Defaults
    cpu_threads: int | None = None  # torch intra-op threads its runs are pinned to (threads.py); None: any

    def __init__(self, paths: DataPaths | None = None) -> None:
        self.paths = paths or DataPaths.from_env()

    def corruptions(self) -> tuple[str, ...]:
        """The input-level corruptions this setup offers."""
        return CORRUPTIONS

    @abstractmethod
    def missing(self) -> list[str]:
        """Messages for each required file that is not on disk (empty: ready to use)."""

    @abstractmethod
    def task(self, spec: TaskSpec) -> "TaskData":
        """The source sample and target splits for one shift, fixed by `spec.seed`."""

    @abstractmethod
    def source_model(self, shift: str) -> "nn.Module":
        """A fresh copy of the pretrained source model for this shift, in eval mode, on CPU."""

    def check(self, spec: TaskSpec) -> TaskSpec:
        """Validate a spec against this setup, filling the default shots; raises BadArgumentError."""
        if spec.shift not in self.shifts:
            raise BadArgumentError(f"shift for setup {self.name}", spec.shift, self.shifts)
        if spec.shift == "input":
            if spec.corruption not in self.corruptions():
                raise BadArgumentError("corruption", spec.corruption, self.corruptions())
            if not 1 <= int(spec.severity) <= 5:
                raise BadArgumentError("severity", spec.severity, "1, 2, 3, 4, 5")
        shots = self.defaults.shots if spec.shots is None else spec.shots
        if shots < 1:
            raise BadArgumentError("shots", shots, "a positive whole number")
        corruption = spec.corruption if spec.shift == "input" else None
        severity = int(spec.severity) if spec.shift == "input" else 0
        return TaskSpec(spec.shift, corruption, severity, shots, spec.seed)
