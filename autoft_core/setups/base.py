"""One interface for every setup (a data set, its three shifts, and the pretrained source model)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from ..core.recipe import CORRUPTIONS, SEVERITY_BOUNDS, SHIFTS, Recipe, TaskSpec, bounds
from ..errors import BadArgumentError
from ..paths import DataPaths

if TYPE_CHECKING:  # torch stays out of the import path of the CLI's cache-hit answer
    from torch import nn

    from ..core.data import TaskData


class Setup(ABC):
    """A data set with its shifts and pretrained source model; each is named in `setups._SETUPS`."""

    name: str
    description: str
    shifts: tuple[str, ...] = SHIFTS
    shifts_help: str | None = None  # what an unknown shift's error offers instead of the bare list (a pointer)
    recipe: Recipe = Recipe()  # this setup's default fine-tuning recipe
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

    def source_model(self, shift: str) -> "nn.Module":
        """A fresh copy of the pretrained source model for this shift, in eval mode, on CPU."""
        return self._source_model(self.check_shift(shift))

    @abstractmethod
    def _source_model(self, shift: str) -> "nn.Module":
        """`source_model` for a shift this setup offers."""

    def check_shift(self, shift: str) -> str:
        """`shift`, if this setup offers it; else one clear error naming the ones it does."""
        if shift not in self.shifts:
            raise BadArgumentError(f"shift for setup {self.name}", shift, self.shifts_help or self.shifts)
        return shift

    def pool_counts(self, spec: TaskSpec) -> list[int] | None:
        """Images per class of `spec`'s training pool (what any shots value draws from) when known without
        building the task, so shot curves and the dashboard's shots bound need none; None: build it and count."""
        return None

    def check(self, spec: TaskSpec) -> TaskSpec:
        """Validate a spec against this setup (corruption and severity only on the input shift)."""
        self.check_shift(spec.shift)
        if spec.shift == "input":
            if spec.corruption not in self.corruptions():
                raise BadArgumentError("corruption", spec.corruption, self.corruptions())
            severity = SEVERITY_BOUNDS.parse("severity", spec.severity)
        else:
            severity = 0
        shots = bounds("shots").parse("shots", spec.shots)
        return TaskSpec(spec.shift, spec.corruption if spec.shift == "input" else None, severity, shots,
                        spec.seed)
