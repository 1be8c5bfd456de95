"""`--setup python:package.module:function`: any model and data, handed over by a function of yours.

The function takes no arguments and returns a `CustomSetup` (importable as `autoft_core.CustomSetup`):
the pretrained source model, the target data per shift (`autoft_core.TaskData` of `Split`s: images,
or any features the model takes) and, optionally, the layer partition. It is called once per process;
its module must be importable (on PYTHONPATH, or in the folder you run from). Runs are stored under
the setup's name: after changing what the function returns, use another function name or store.
"""
from __future__ import annotations

import copy
import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..core.recipe import CORRUPTIONS, SHIFTS, Recipe, TaskSpec
from ..errors import AutoFTError, BadArgumentError
from ..paths import DataPaths
from .base import Setup

if TYPE_CHECKING:
    from torch import nn

    from ..core.data import TaskData

PREFIX = "python:"
_FORM = re.compile(r"^python:([A-Za-z_][\w.]*):([A-Za-z_]\w*)$")


@dataclass(frozen=True)
class CustomSetup:
    """What a `python:` entry point returns.

    - model: the pretrained source model (every run gets a fresh copy);
    - tasks: the target data per shift, {"feature": TaskData, ...} (the run's shots are drawn from its
      train split, balanced by the run's seed), or a function TaskSpec -> TaskData that builds it;
    - layers: the layer partition, input to output, for both granularities: (name, [module or
      parameter name prefixes]) pairs, or the layers `autoft_core.layer_partition` gives; None: the
      model's own (each conv / linear with its norm, or what the model declares);
    - recipe: the default fine-tuning recipe; shifts: those offered (default: the keys of `tasks`, or
      all three when `tasks` is a function); corruptions: those a function accepts for the input shift.
    """

    model: "nn.Module"
    tasks: "Mapping[str, TaskData] | Callable[[TaskSpec], TaskData]"
    layers: Sequence[Any] | None = None
    recipe: Recipe = field(default_factory=Recipe)
    description: str = "Your own: a model and data from a Python function"
    shifts: tuple[str, ...] | None = None
    corruptions: tuple[str, ...] = CORRUPTIONS


def _layer_spec(layers: Sequence[Any]) -> list[tuple[str, tuple[str, ...], bool]]:
    """(name, prefixes, residual) entries from pairs or from `Layer`s."""
    spec = []
    for item in layers:
        if hasattr(item, "param_names"):
            spec.append((item.name, tuple(item.param_names), bool(getattr(item, "residual", False))))
        else:
            name, prefixes, *rest = item
            prefixes = (prefixes,) if isinstance(prefixes, str) else tuple(prefixes)
            spec.append((str(name), prefixes, bool(rest and rest[0])))
    return spec


@lru_cache(maxsize=8)
def _entry(module: str, function: str) -> CustomSetup:
    """Import the module, call the function once, check what it returns."""
    where = f"{PREFIX}{module}:{function}"
    try:
        make = getattr(importlib.import_module(module), function)
    except ImportError as exc:
        raise AutoFTError(f"setup {where}: cannot import module {module} ({exc}); run from its folder or add "
                          "that folder to PYTHONPATH") from exc
    except AttributeError as exc:
        raise AutoFTError(f"setup {where}: module {module} has no function {function}") from exc
    try:
        made = make()
    except SystemExit as exc:
        raise AutoFTError(f"setup {where}: {function}() exited (status {exc.code}) instead of returning "
                          "autoft_core.CustomSetup(model=..., tasks={...})") from exc
    except Exception as exc:  # the user's own code: one line naming it, not its traceback
        first = (str(exc).strip().splitlines() or [""])[0]
        raise AutoFTError(f"setup {where}: {function}() raised {type(exc).__name__}: {first}; it must take no "
                          "arguments and return autoft_core.CustomSetup(model=..., tasks={...})") from exc
    if not isinstance(made, CustomSetup):
        raise AutoFTError(f"setup {where}: {function}() returned a {type(made).__name__}; return "
                          "autoft_core.CustomSetup(model=..., tasks={...})")
    return made


class PythonSetup(Setup):
    """A setup made by a `python:package.module:function` entry point."""

    def __init__(self, name: str, paths: DataPaths | None = None) -> None:
        super().__init__(paths)
        form = _FORM.match(name)
        if form is None:
            raise BadArgumentError("python setup", name, "python:package.module:function")
        self.name = name
        self.module, self.function = form.groups()

    @property
    def entry(self) -> CustomSetup:
        return _entry(self.module, self.function)

    @property
    def shifts(self) -> tuple[str, ...]:  # type: ignore[override]
        entry = self.entry
        shifts = entry.shifts or (tuple(entry.tasks) if isinstance(entry.tasks, Mapping) else SHIFTS)
        unknown = [s for s in shifts if s not in SHIFTS]
        if unknown:
            raise BadArgumentError(f"shift of setup {self.name}", unknown[0], SHIFTS)
        return shifts

    @property
    def recipe(self) -> Recipe:  # type: ignore[override]
        return self.entry.recipe

    @property
    def description(self) -> str:  # type: ignore[override]
        return self.entry.description

    def corruptions(self) -> tuple[str, ...]:
        return self.entry.corruptions

    def missing(self) -> list[str]:
        try:
            self.entry
        except AutoFTError as exc:
            return [str(exc)]
        return []

    def task(self, spec: TaskSpec) -> "TaskData":
        """The function's data for the spec's shift; from a mapping, the shots are drawn from its train split."""
        import torch

        from ..core.data import TaskData, balanced_indices

        spec = self.check(spec)
        tasks = self.entry.tasks
        data = tasks[spec.shift] if isinstance(tasks, Mapping) else tasks(spec)
        if not isinstance(data, TaskData):
            raise AutoFTError(f"setup {self.name}: the {spec.shift} task is a {type(data).__name__}, not a "
                              "autoft_core.TaskData")
        if isinstance(tasks, Mapping):
            per_class = max(1, spec.shots // data.num_classes)
            chosen = balanced_indices(data.train.y, per_class, torch.Generator().manual_seed(spec.seed))
            data = TaskData(data.source, data.train.subset(chosen), data.val, data.test, data.num_classes)
        return data

    def source_model(self, shift: str) -> "nn.Module":
        """A copy of the function's model, with its layer partition declared when one was given."""
        from ..layers import partition

        model = copy.deepcopy(self.entry.model)
        if self.entry.layers is not None:
            model.autoft_modules = model.autoft_blocks = _layer_spec(self.entry.layers)
            try:
                partition(model)
            except ValueError as exc:
                raise AutoFTError(f"setup {self.name}: its layers do not partition the model: {exc}") from exc
        return model.eval()
