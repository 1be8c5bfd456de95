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
import numbers
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


_PAIRS = "give a list of (name, [module or parameter name prefixes]) pairs, input to output, or leave it out"


def _is_list_of(value: object, kind: type) -> bool:
    """Whether `value` is a list or tuple of `kind`s (a plain string is not a list of names)."""
    return isinstance(value, (list, tuple)) and all(isinstance(v, kind) for v in value)


def _layer_spec(layers: Sequence[Any], where: str) -> list[tuple[str, tuple[str, ...], bool]]:
    """(name, prefixes, residual) entries from pairs or from `Layer`s; one line naming the first malformed one."""
    if not isinstance(layers, (list, tuple)):
        raise AutoFTError(f"setup {where}: its layers are a {type(layers).__name__}; {_PAIRS}")
    spec = []
    for i, item in enumerate(layers):
        if hasattr(item, "param_names"):
            spec.append((item.name, tuple(item.param_names), bool(getattr(item, "residual", False))))
            continue
        prefixes = item[1] if isinstance(item, (list, tuple)) and len(item) in (2, 3) else None
        prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
        if not _is_list_of(prefixes, str):
            raise AutoFTError(f"setup {where}: its layers[{i}] is a {type(item).__name__}, not a (name, "
                              f"[prefixes]) pair; {_PAIRS}")
        spec.append((str(item[0]), tuple(prefixes), bool(item[2:] and item[2])))
    return spec


def _check_fields(where: str, made: CustomSetup) -> None:
    """The CustomSetup's fields have the types a run needs: one line naming the first that does not."""
    from torch import nn

    if not isinstance(made.model, nn.Module):
        raise AutoFTError(f"setup {where}: its model is a {type(made.model).__name__}, not a torch.nn.Module; "
                          "give the pretrained model itself")
    if next(made.model.parameters(), None) is None:
        raise AutoFTError(f"setup {where}: the model has no parameters to fine-tune; give the pretrained model "
                          "itself, with its weights")
    if not (isinstance(made.tasks, Mapping) or callable(made.tasks)):
        raise AutoFTError(f"setup {where}: its tasks are a {type(made.tasks).__name__}; give {{shift: "
                          "autoft_core.TaskData}} or a function TaskSpec -> TaskData")
    for name in ("shifts", "corruptions"):
        value = getattr(made, name)
        if not (value is None and name == "shifts" or _is_list_of(value, str)):
            raise AutoFTError(f"setup {where}: its {name} are a {type(value).__name__}; give a tuple of names, "
                              'e.g. ("feature",), or leave it out')
    if isinstance(made.tasks, Mapping) and not made.tasks or made.shifts is not None and not made.shifts:
        raise AutoFTError(f"setup {where}: it offers no tasks (its tasks or shifts are empty); give "
                          'tasks={"feature": autoft_core.TaskData(...)} (shifts: feature, input, output)')
    missing = [s for s in made.shifts or () if s not in made.tasks] if isinstance(made.tasks, Mapping) else []
    if missing:
        raise AutoFTError(f"setup {where}: its shifts offer {missing[0]} but its tasks have no {missing[0]} key; "
                          "add that task or drop the shift")
    if not isinstance(made.recipe, Recipe):
        raise AutoFTError(f"setup {where}: its recipe is a {type(made.recipe).__name__}, not an "
                          "autoft_core.Recipe; give recipe=autoft_core.Recipe(...) or leave it out")
    if not isinstance(made.description, str):
        raise AutoFTError(f"setup {where}: its description is a {type(made.description).__name__}; give a string")
    if made.layers is not None:
        _layer_spec(made.layers, where)  # a malformed partition: refused now, not when a run builds the model


def _first_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"


@lru_cache(maxsize=8)
def _entry(module: str, function: str) -> CustomSetup:
    """Import the module, call the function once, check what it returns."""
    where = f"{PREFIX}{module}:{function}"
    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        raise AutoFTError(f"setup {where}: cannot import module {module} ({exc}); run from its folder or add "
                          "that folder to PYTHONPATH") from exc
    except Exception as exc:  # the module's own code failed (a syntax error, an exception at import)
        raise AutoFTError(f"setup {where}: importing module {module} raised {_first_line(exc)}; fix the "
                          "module so that `import` succeeds") from exc
    make = getattr(imported, function, None)
    if make is None:
        raise AutoFTError(f"setup {where}: module {module} has no function {function}")
    try:
        made = make()
    except SystemExit as exc:
        raise AutoFTError(f"setup {where}: {function}() exited (status {exc.code}) instead of returning "
                          "autoft_core.CustomSetup(model=..., tasks={...})") from exc
    except Exception as exc:  # the user's own code: one line naming it, not its traceback
        raise AutoFTError(f"setup {where}: {function}() raised {_first_line(exc)}; it must take no "
                          "arguments and return autoft_core.CustomSetup(model=..., tasks={...})") from exc
    if not isinstance(made, CustomSetup):
        raise AutoFTError(f"setup {where}: {function}() returned a {type(made).__name__}; return "
                          "autoft_core.CustomSetup(model=..., tasks={...})")
    _check_fields(where, made)
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
        """The user function's setup, built once per process (imported and checked by `_entry`)."""
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
        if isinstance(tasks, Mapping):
            data = tasks[spec.shift]
        else:
            try:
                data = tasks(spec)
            except AutoFTError:
                raise
            except Exception as exc:  # the user's own function: one line naming it, not its traceback
                raise AutoFTError(f"setup {self.name}: tasks(spec) raised {_first_line(exc)}; it must return "
                                  f"autoft_core.TaskData for the {spec.shift} shift") from exc
        if not isinstance(data, TaskData):
            raise AutoFTError(f"setup {self.name}: the {spec.shift} task is a {type(data).__name__}, not a "
                              "autoft_core.TaskData")
        self._check_splits(spec.shift, data)
        self._check_labels(spec.shift, data)
        self._check_outputs(spec.shift, data)
        if isinstance(tasks, Mapping):
            per_class = max(1, spec.shots // data.num_classes)
            chosen = balanced_indices(data.train.y, per_class, torch.Generator().manual_seed(spec.seed))
            data = TaskData(data.source, data.train.subset(chosen), data.val, data.test, data.num_classes)
        return data

    def _check_splits(self, shift: str, data: "TaskData") -> None:
        """Every split is a non-empty Split of torch tensors with finite inputs; num_classes is a whole number >= 2."""
        import torch

        from ..core.data import Split

        n = data.num_classes
        if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 2:
            raise AutoFTError(f"setup {self.name}: the {shift} task's num_classes is {n!r}; give the number of "
                              "classes the model tells apart, a whole number of at least 2")
        for name in ("source", "train", "val", "test"):
            split = getattr(data, name)
            where = f"setup {self.name}: the {shift} task's {name} split"
            if not isinstance(split, Split):
                raise AutoFTError(f"{where} is a {type(split).__name__}; make it autoft_core.Split(x, y)")
            x, y = split.x, split.y
            if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
                raise AutoFTError(f"{where} holds a {type(x).__name__} and a {type(y).__name__}: its x and y must "
                                  "be torch tensors (torch.as_tensor(...))")
            if not len(split):
                raise AutoFTError(f"{where} is empty; give it examples")
            if (x.dtype.is_floating_point or x.dtype.is_complex) and not bool(torch.isfinite(x).all()):
                raise AutoFTError(f"{where} has NaN or infinite values in x; fix or drop those examples")

    def _check_labels(self, shift: str, data: "TaskData") -> None:
        """Every split's labels are whole numbers from 0 to num_classes - 1 (what cross-entropy takes)."""
        import torch

        for name in ("source", "train", "val", "test"):
            y = getattr(data, name).y
            if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
                raise AutoFTError(f"setup {self.name}: the {shift} task's {name} labels are {y.dtype}; make them "
                                  "integers (torch.long) from 0 to num_classes - 1")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= data.num_classes):
                raise AutoFTError(f"setup {self.name}: the {shift} task's {name} labels run from {int(y.min())} "
                                  f"to {int(y.max())}, outside 0 to num_classes - 1 = {data.num_classes - 1}; "
                                  "renumber them or raise num_classes")

    def _check_outputs(self, shift: str, data: "TaskData") -> None:
        """The model takes the task's inputs and gives num_classes logits per example (one forward on two test
        examples, the model's own mode put back)."""
        import torch

        model, example = self.entry.model, data.test.x[:2]
        training = model.training
        try:
            with torch.no_grad():
                logits = model.eval()(example)
        except Exception as exc:  # the user's model and data: one line naming the mismatch
            raise AutoFTError(f"setup {self.name}: the model rejects the {shift} task's inputs of shape "
                              f"{tuple(example.shape[1:])} ({_first_line(exc)}); make the task's x what the "
                              "model takes") from exc
        finally:
            model.train(training)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[1] != data.num_classes:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise AutoFTError(f"setup {self.name}: the model gives {shape} for 2 examples of the {shift} task, "
                              f"not (2, {data.num_classes}) logits; give it a head of num_classes outputs")

    def _source_model(self, shift: str) -> "nn.Module":
        """A copy of the function's model, with its layer partition declared when one was given."""
        from ..layers import partition

        model = copy.deepcopy(self.entry.model)
        if self.entry.layers is not None:
            model.autoft_modules = model.autoft_blocks = _layer_spec(self.entry.layers, self.name)
            try:
                partition(model)
            except ValueError as exc:
                raise AutoFTError(f"setup {self.name}: its layers do not partition the model: {exc}") from exc
        return model.eval()
