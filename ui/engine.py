"""What the pages need from the engine, Streamlit-free: the settings a page runs with, run configs built
from them, setups and methods for the pickers, the store, the target pool's size and sample images.

Runs and their store look-ups go through `autoft_core.experiment.lookup` and the sweep engine (`ui.jobs`);
nothing here computes a result itself.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from autoft_core.config import RunConfig
from autoft_core.core.recipe import DEFAULT_SEVERITY, MAX_SHOTS, Recipe
from autoft_core.errors import AutoFTError
from autoft_core.paths import DataPaths
from autoft_core.setups import Setup, get_setup, overview
from autoft_core.store import default_store_path

STORE_ENV = "AUTOFT_STORE"
PATH_LABELS = {
    "cifar10_dir": "CIFAR-10 folder (holds cifar-10-batches-py/)",
    "cifar10c_dir": "CIFAR-10-C folder (holds CIFAR-10-C/)",
    "robustbench_model_dir": "RobustBench model folder",
    "imagenet_dir": "ImageNet root (train/, val/)",
    "breeds_info_dir": "BREEDS hierarchy folder",
    "moco_checkpoint": "MoCo-v2 checkpoint file",
}
PREFERRED_METHODS = ("full", "auto-rgn", "criticality-random")
SHIFT_NAMES = {"input": "input-level (corrupted images)", "feature": "feature-level (unseen subclasses)",
               "output": "output-level (flipped labels)"}


@dataclass(frozen=True)
class Task:
    """What to adapt to: a setup's shift, with its corruption and severity when input-level."""

    setup: str = "digits"
    shift: str = "output"
    corruption: str | None = None
    severity: int = DEFAULT_SEVERITY

    def describe(self) -> str:
        """'digits · input (frost, severity 5)' or 'digits · output'."""
        detail = f" ({self.corruption}, severity {self.severity})" if self.shift == "input" else ""
        return f"{self.setup} · {self.shift}{detail}"


@dataclass(frozen=True)
class Settings:
    """The sidebar's shared settings: the recipe (the setup's defaults unless changed), seeds, device, paths."""

    recipe: Recipe
    seeds: tuple[int, ...] = (0,)
    device: str = "auto"
    paths: DataPaths = field(default_factory=DataPaths)


@dataclass(frozen=True)
class PlannedRun:
    """One run a page wants: its method label, seed, shots and config."""

    label: str
    seed: int
    shots: int
    cfg: RunConfig


# ----------------------------------------------------------------------------- store, paths, device

def store_path() -> Path:
    """The result store the dashboard uses: $AUTOFT_STORE, else the engine's default."""
    return Path(os.environ[STORE_ENV]) if os.environ.get(STORE_ENV) else default_store_path()


def store_version(path: Path) -> tuple[int, ...]:
    """A cheap token that changes whenever the store is written (the WAL file grows on every commit)."""
    stats = [p.stat() for p in (path, path.with_name(path.name + "-wal")) if p.exists()]
    return tuple(v for s in stats for v in (s.st_mtime_ns, s.st_size))


def path_problems(raw: dict[str, str]) -> tuple[DataPaths, list[str]]:
    """The given paths the server configured (AUTOFT_* variables) as DataPaths, and a message for each other one.

    Only the configured folders are looked up on disk: any other path a viewer types is refused unseen, so
    the dashboard cannot be used to learn which paths exist on the server."""
    valid = {f.name for f in fields(DataPaths)}
    configured = {name: text.strip() for name, text in env_paths().items()}
    problems, good = [], {}
    for name, text in raw.items():
        text = (text or "").strip()
        if name not in valid or not text:
            continue
        label = PATH_LABELS.get(name, name)
        if text != configured.get(name):
            problems.append(f"{label}: {text} is not the folder configured for this server, so it is not used; "
                            f"set {DataPaths.ENV[name]} where the dashboard is started.")
        elif Path(text).expanduser().exists():
            good[name] = Path(text).expanduser()
        else:
            problems.append(f"{label}: the configured {text} does not exist.")
    return DataPaths().with_overrides(**good), problems


def env_paths() -> dict[str, str]:
    """The real-setup paths given by AUTOFT_* environment variables (the sidebar's starting values)."""
    return {name: os.environ.get(var, "") for name, var in DataPaths.ENV.items()}


def device_problem(name: str) -> str | None:
    """None when the device can be used, else why not."""
    from autoft_core.device import resolve_device

    try:
        resolve_device(name)
    except AutoFTError as exc:
        return str(exc)
    return None


def device_summary() -> str:
    """What `auto` picks here, in words (e.g. "GPU: NVIDIA H100" or "CPU (4 threads)")."""
    import torch

    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'' if threads == 1 else 's'}, no CUDA GPU visible)"


# ----------------------------------------------------------------------------- setups and methods

def setup(name: str) -> Setup:
    """The registered setup `name` (its shifts, corruptions, default recipe), its paths from AUTOFT_*."""
    return get_setup(name)


def setups_overview(paths: DataPaths) -> list[dict[str, Any]]:
    """Every setup with its description, shifts (as one line), readiness and the missing files' messages."""
    return [{**row, "shifts": ", ".join(row["shifts"])} for row in overview(paths)]


def method_names() -> list[str]:
    """Every registered weighting method, in display order."""
    from autoft_core.methods import method_names as names

    return names()


def method_class(name: str) -> Any:
    """The registered Method class `name` (summary, params with bounds, declared grid)."""
    from autoft_core.methods import method_class as cls

    return cls(name)


def default_methods(names: Sequence[str]) -> list[str]:
    """Full fine-tuning, Auto-RGN and Module Criticality when registered; else the first two methods."""
    chosen = [n for n in PREFERRED_METHODS if n in names]
    return chosen if len(chosen) > 1 else list(names[:2])


def non_default_params(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Only the hyper-parameters that differ from the method's defaults (all of them if it is unknown)."""
    try:
        spec = method_class(method).params
    except AutoFTError:
        return dict(params)
    return {k: v for k, v in params.items() if k not in spec or spec[k].default != v}


def method_label(method: str, params: dict[str, Any] | None) -> str:
    """`method`, or `method (k=v, ...)` listing its non-default hyper-parameters."""
    extra = non_default_params(method, params or {})
    return f"{method} ({', '.join(f'{k}={v}' for k, v in sorted(extra.items()))})" if extra else method


# ----------------------------------------------------------------------------- configs

def run_config(task: Task, method: str, params: dict[str, Any], recipe: Recipe, seed: int) -> RunConfig:
    """The RunConfig of one run (corruption and severity only count on the input shift)."""
    is_input = task.shift == "input"
    return RunConfig(setup=task.setup, shift=task.shift, corruption=task.corruption if is_input else None,
                     severity=task.severity if is_input else DEFAULT_SEVERITY, method=method, params=dict(params),
                     recipe=recipe, seed=seed)


def plan_runs(task: Task, methods: dict[str, dict[str, Any]], settings: Settings,
              shots: Sequence[int | None] = (None,)) -> list[PlannedRun]:
    """Every method × shots × seed run, in that order (`None` shots: the recipe's)."""
    plan = []
    for method, params in methods.items():
        for k in shots:
            recipe = settings.recipe if k is None else replace(settings.recipe, shots=k)
            plan += [PlannedRun(method_label(method, params), seed, recipe.shots,
                                run_config(task, method, params, recipe, seed)) for seed in settings.seeds]
    return plan


# ----------------------------------------------------------------------------- the target pool and images

def _task_config(task: Task, seed: int, paths: DataPaths, shots: int = MAX_SHOTS) -> RunConfig:
    """A resolved config of the task for one seed, the setup's recipe at `shots` (what the task is keyed by)."""
    from autoft_core.experiment import resolve

    recipe = replace(get_setup(task.setup, paths).recipe, shots=shots)
    return resolve(run_config(task, "full", {}, recipe, seed), paths)


def _task_data(task: Task, seed: int, paths: DataPaths, shots: int = MAX_SHOTS) -> Any:
    """The task's data (source sample, target splits) for one seed, through the engine's task cache."""
    from autoft_core.experiment import load_task

    return load_task(_task_config(task, seed, paths, shots), paths)[1]


def pool_counts(task: Task, seeds: Sequence[int], paths: DataPaths) -> list[list[int]]:
    """Per seed, the examples per class in the target training pool (what any shots value draws from)."""
    from autoft_core.experiment import pool_counts

    return [pool_counts(_task_config(task, seed, paths), paths) for seed in seeds or (0,)]


SAMPLE_SCALE = 3  # sample images drawn 3x their size (nearest-neighbour), so 32 px digits are legible


def _uint8(x: Any) -> list[Any]:
    """(N, 3, H, W) floats in [0, 1] -> N uint8 (H, W, 3) arrays, each drawn SAMPLE_SCALE times its size."""
    arr = (x.clamp(0, 1).numpy() * 255).round().astype("uint8").transpose(0, 2, 3, 1)
    return [a.repeat(SAMPLE_SCALE, axis=0).repeat(SAMPLE_SCALE, axis=1) for a in arr]


def shift_samples(task: Task, paths: DataPaths, n: int = 8) -> list[tuple[str, list, list[int]]]:
    """Two image rows that show what a shift does: (caption, images, labels) each.

    The digits setup builds every shift's target from one pool, split by the seed, so the input task's
    test image i is the output task's test image i corrupted, and the output task's label i is the
    flipped original label i (tests/test_ui_frames.py checks this). input: the same images clean, then
    corrupted; output: the same images with their original, then their flipped label; feature: source
    and target images under the same labels (different subclasses).
    """
    from autoft_core.experiments.plan import task_corruption

    if task.shift == "feature":
        data = _task_data(task, 0, paths)
        first = [[int((split.y == k).nonzero()[0]) for k in range(data.num_classes)]
                 for split in (data.source, data.test)]
        return [("Source: the subclasses the model learnt", _uint8(data.source.x[first[0]]),
                 data.source.y[first[0]].tolist()),
                ("Target: other subclasses under the same labels", _uint8(data.test.x[first[1]]),
                 data.test.y[first[1]].tolist())]
    corruption = task_corruption("input", task.corruption)
    plain = _task_data(Task(task.setup, "output"), 0, paths)
    shifted = _task_data(Task(task.setup, "input", corruption, task.severity), 0, paths)
    clean, original = _uint8(plain.test.x[:n]), shifted.test.y[:n].tolist()
    if task.shift == "input":
        return [("Clean target images (what the source model reads well)", clean, original),
                (f"The same images with {corruption} at severity {task.severity}", _uint8(shifted.test.x[:n]),
                 original)]
    return [("Target images with their original labels", clean, original),
            ("The same images with their flipped labels (what fine-tuning must learn)", clean,
             plain.test.y[:n].tolist())]


def selection(setup_name: str, recipe: dict[str, Any], severity: int, corruptions: Sequence[str],
              methods: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
              current_only: bool = True, shifts: Sequence[str] | None = None) -> Any:
    """Table 1's `experiments.tables.Selection` (`table1_selection`, as the CLI's `table`), over the setup's
    shifts unless `shifts` names some."""
    from autoft_core.experiments.tables import table1_selection

    return table1_selection(setup_name, shifts or get_setup(setup_name).shifts, corruptions, severity, recipe,
                            current_only, methods, seeds)
