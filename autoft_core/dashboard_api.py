"""A thin, Streamlit-free facade over the engine for the dashboard: configs, store look-ups, tables.

The pages only draw; everything they show is computed here from the engine's public API (setups,
methods, `run_experiment`, `compute_weights`, `ResultStore`), so it can be tested without a browser.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import RunConfig, code_version
from .errors import AutoFTError
from .paths import DataPaths
from .setups import get_setup, setup_names
from .store import ResultStore, default_store_path

STORE_ENV = "AUTOFT_STORE"
SHOT_LEVELS = (1, 5, 10, 25, 50, 100)
METRICS = {"test_acc": "final", "best_val_test_acc": "best-val", "zero_shot_acc": "zero-shot"}
PATH_LABELS = {
    "cifar10_dir": "CIFAR-10 folder (holds cifar-10-batches-py/)",
    "cifar10c_dir": "CIFAR-10-C folder (holds CIFAR-10-C/)",
    "robustbench_model_dir": "RobustBench model folder",
    "imagenet_dir": "ImageNet root (train/, val/)",
    "breeds_info_dir": "BREEDS hierarchy folder",
    "moco_checkpoint": "MoCo-v2 checkpoint file",
}
PREFERRED_METHODS = ("full", "auto-rgn", "criticality-random")


# ----------------------------------------------------------------------------- settings and configs

@dataclass(frozen=True)
class Task:
    """What to adapt to: a setup's shift (with its corruption and severity when input-level)."""

    setup: str = "digits"
    shift: str = "output"
    corruption: str | None = None
    severity: int = 5
    granularity: str = "module"


@dataclass(frozen=True)
class Recipe:
    """The sidebar's shared settings. None means the setup's default."""

    epochs: int = 5
    shots: int | None = None
    lr: float | None = None
    seeds: tuple[int, ...] = (0,)
    device: str = "auto"
    paths: DataPaths = field(default_factory=DataPaths)


def store_path() -> Path:
    """The result store the dashboard uses: $AUTOFT_STORE, else the engine's default."""
    return Path(os.environ[STORE_ENV]) if os.environ.get(STORE_ENV) else default_store_path()


def store_version(path: Path) -> tuple[int, ...]:
    """A cheap token that changes whenever the store is written (the WAL file grows on every commit)."""
    stats = [p.stat() for p in (path, path.with_name(path.name + "-wal")) if p.exists()]
    return tuple(v for s in stats for v in (s.st_mtime_ns, s.st_size))


def recipe_problems(epochs: int, shots: int | None, lr: float | None, seeds: Sequence[int]) -> list[str]:
    """Human-readable reasons why these settings cannot fine-tune (empty: fine)."""
    problems = []
    if epochs < 1:
        problems.append(f"Epochs is {epochs}: fine-tuning needs at least 1 epoch.")
    if shots is not None and shots < 1:
        problems.append(f"Shots is {shots}: give at least 1 training example (or leave it empty for the default).")
    if lr is not None and not lr > 0:
        problems.append(f"Learning rate is {lr}: it must be positive (or leave it empty for the default).")
    if not seeds:
        problems.append("No seed chosen: pick at least one.")
    return problems


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
    from .device import resolve_device

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
    return f"CPU ({torch.get_num_threads()} threads, no CUDA GPU visible)"


def run_config(task: Task, method: str, params: dict[str, Any], recipe: Recipe, seed: int,
               shots: int | None = None) -> RunConfig:
    """The RunConfig of one run; `shots` overrides the recipe's (shot scaling)."""
    return RunConfig(setup=task.setup, shift=task.shift,
                     corruption=task.corruption if task.shift == "input" else None,
                     severity=task.severity if task.shift == "input" else 5,
                     method=method, params=dict(params), granularity=task.granularity,
                     shots=recipe.shots if shots is None else shots, epochs=recipe.epochs,
                     lr=recipe.lr, seed=seed)


# ----------------------------------------------------------------------------- setups and methods

def setups_overview(paths: DataPaths) -> list[dict[str, Any]]:
    """Every setup with its description, shifts, readiness and the missing files' messages."""
    rows = []
    for name in setup_names():
        setup = get_setup(name, paths)
        missing = setup.missing()
        rows.append({"setup": name, "ready": not missing, "description": setup.description,
                     "shifts": ", ".join(setup.shifts), "missing": missing})
    return rows


def setup_choices(name: str, paths: DataPaths) -> dict[str, Any]:
    """The shifts, corruptions, defaults and missing files of one setup (to fill the pickers)."""
    setup = get_setup(name, paths)
    return {"shifts": list(setup.shifts), "corruptions": list(setup.corruptions()),
            "defaults": setup.defaults, "missing": setup.missing()}


def method_catalogue() -> dict[str, dict[str, Any]]:
    """Registered methods in display order: summary, hyper-parameters (Param objects), one-hot flag."""
    from .methods import method_class, method_names

    return {name: {"summary": method_class(name).summary, "params": dict(method_class(name).params),
                   "one_hot": method_class(name).one_hot} for name in method_names()}


def default_methods(names: Sequence[str]) -> list[str]:
    """Full fine-tuning, Auto-RGN and Module Criticality when registered; else the first two methods."""
    chosen = [n for n in PREFERRED_METHODS if n in names]
    return chosen if len(chosen) > 1 else list(names[:2])


def non_default_params(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Only the hyper-parameters that differ from the method's defaults (all of them if it is unknown)."""
    from .methods import method_class

    try:
        spec = method_class(method).params
    except AutoFTError:
        return dict(params)
    return {k: v for k, v in params.items() if k not in spec or spec[k].default != v}


def method_label(method: str, params: dict[str, Any] | None) -> str:
    """`method`, or `method (k=v, ...)` listing its non-default hyper-parameters."""
    extra = non_default_params(method, params or {})
    return f"{method} ({', '.join(f'{k}={v}' for k, v in sorted(extra.items()))})" if extra else method


def readable_layers(names: Sequence[str]) -> list[str]:
    """Layer names for axes: dots become spaces; kept unique so categorical axes never merge two."""
    out: list[str] = []
    for i, name in enumerate(names):
        label = name.replace(".", " ")
        out.append(label if label not in out else f"{label} #{i + 1}")
    return out


# ----------------------------------------------------------------------------- images

def _to_uint8(x: Any, scale: int) -> list[np.ndarray]:
    """(N, 3, H, W) floats in [0, 1] -> N uint8 (H*scale, W*scale, 3) arrays, nearest-neighbour."""
    arr = (x.clamp(0, 1).numpy() * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
    return [a.repeat(scale, axis=0).repeat(scale, axis=1) for a in arr]


def shift_samples(task: Task, paths: DataPaths, n: int = 8, scale: int = 3) -> dict[str, Any]:
    """The first `n` source images (what the model learnt) and target test images (the shifted task)."""
    from .experiment import load_task, resolve

    cfg = resolve(run_config(task, "full", {}, Recipe(paths=paths), seed=0), paths)
    _, data = load_task(cfg, paths)
    return {"source": _to_uint8(data.source.x[:n], scale), "source_labels": data.source.y[:n].tolist(),
            "target": _to_uint8(data.test.x[:n], scale), "target_labels": data.test.y[:n].tolist(),
            "num_classes": data.num_classes}


def shot_levels(task: Task, paths: DataPaths, seeds: Sequence[int] = (0,),
                candidates: Iterable[int] = SHOT_LEVELS) -> tuple[int, list[int]]:
    """(number of classes, the per-class K of `candidates` the target pool can balance for every seed)."""
    from .experiments.plan import shot_capacity

    corruption = task.corruption if task.shift == "input" else None
    classes, smallest = shot_capacity(task.setup, task.shift, corruption, task.severity, list(seeds) or [0], paths)
    return classes, [k for k in candidates if k <= smallest]


# ----------------------------------------------------------------------------- runs

def stored_result(store: ResultStore, cfg: RunConfig, paths: DataPaths) -> dict | None:
    """The stored result of `cfg` (as requested, else as resolved), or None when never computed."""
    found = store.get(cfg.key())
    if found is not None:
        return found
    from .experiment import resolve

    return store.get(resolve(cfg, paths).key())


def run(cfg: RunConfig, store: ResultStore, recipe: Recipe, progress: Callable[[int, int, dict], None] | None = None,
        status: Callable[[str], None] | None = None) -> dict:
    """Weights + fine-tuning of one config through the engine (stored; from the store if already there)."""
    from .experiment import run_experiment

    return run_experiment(cfg, store, recipe.paths, recipe.device, progress, status)


def layer_weights(cfg: RunConfig, recipe: Recipe, status: Callable[[str], None] | None = None) -> dict:
    """A method's per-layer scores and multipliers (no fine-tuning unless the method needs it)."""
    from .experiment import compute_weights

    return compute_weights(cfg, recipe.paths, recipe.device, status)


@dataclass(frozen=True)
class PlannedRun:
    """One run a page wants: its method label, seed, shots and config."""

    label: str
    seed: int
    shots: int | None
    cfg: RunConfig


@dataclass(frozen=True)
class RunRef:
    """One stored run as the pages group it: method label, seed, shots and its result dict."""

    label: str
    seed: int
    shots: int | None
    result: dict


def plan_runs(task: Task, methods: dict[str, dict[str, Any]], recipe: Recipe,
              shots: Sequence[int | None] = (None,)) -> list[PlannedRun]:
    """Every method × shots × seed run, in that order (`None` shots: the recipe's)."""
    return [PlannedRun(method_label(method, params), seed, recipe.shots if k is None else k,
                       run_config(task, method, params, recipe, seed, k))
            for method, params in methods.items() for k in shots for seed in recipe.seeds]


def weights_frame(results: dict[str, dict]) -> pd.DataFrame:
    """Long table (method, index, layer, name, weight, score), layers ordered input -> output."""
    rows = []
    for label, out in results.items():
        names = readable_layers(out["layers"])
        for i, (raw, name) in enumerate(zip(out["layers"], names)):
            rows.append({"method": label, "index": i, "layer": name, "name": raw,
                         "weight": _number(out["weights"][i]), "score": _number(out["scores"][i])})
    return pd.DataFrame(rows, columns=["method", "index", "layer", "name", "weight", "score"])


def _mean_std(values: pd.Series) -> str:
    """'83.4 ± 1.2' in percent (no ± for one value)."""
    values = values.dropna() * 100
    if values.empty:
        return ""
    return f"{values.mean():.1f}" if len(values) == 1 else f"{values.mean():.1f} ± {values.std(ddof=1):.1f}"


def diverged_message(label: str, result: dict) -> str:
    """One line for a run whose training diverged."""
    return (f"{label}: training diverged at epoch {result.get('diverged_epoch')} (the loss became infinite or "
            "NaN): lower the learning rate. It is stored as diverged, without a final accuracy.")


def _status(result: dict) -> str:
    """'ok', or 'diverged at epoch 3'."""
    status = result.get("status", "ok")
    return f"diverged at epoch {result.get('diverged_epoch')}" if status == "diverged" else status


def _number(value: Any) -> float:
    """A stored number as a float; null (a non-finite number, or none) as NaN."""
    return float("nan") if value is None else float(value)


def accuracy_table(runs: Sequence[RunRef]) -> pd.DataFrame:
    """Per method: zero-shot, final and best-val test accuracy (mean ± std over seeds, %), epochs, time, status."""
    flat = pd.DataFrame([{"method": r.label, "seed": r.seed, **{k: _number(r.result[k]) for k in METRICS},
                          "best_val_epoch": r.result["best_val_epoch"], "seconds": r.result["seconds"],
                          "status": _status(r.result)} for r in runs])
    if flat.empty:
        return flat
    rows = []
    for label, group in flat.groupby("method", sort=False):
        rows.append({"method": label, "seeds": len(group),
                     "zero-shot %": _mean_std(group["zero_shot_acc"]), "final %": _mean_std(group["test_acc"]),
                     "best-val %": _mean_std(group["best_val_test_acc"]),
                     "best epoch": ", ".join(str(e) for e in group["best_val_epoch"]),
                     "seconds": round(float(group["seconds"].mean()), 1),
                     "status": ", ".join(dict.fromkeys(group["status"]))})
    return pd.DataFrame(rows)


def history_frame(runs: Sequence[RunRef]) -> pd.DataFrame:
    """Per method and epoch: train loss, train and validation accuracy averaged over seeds."""
    rows = [{"method": r.label, "seed": r.seed, "epoch": h["epoch"],
             **{k: _number(h.get(k)) for k in ("train_loss", "train_acc", "val_acc")}}
            for r in runs for h in r.result.get("history", [])]
    if not rows:
        return pd.DataFrame(columns=["method", "epoch", "train_loss", "train_acc", "val_acc"])
    frame = pd.DataFrame(rows)
    return frame.groupby(["method", "epoch"], sort=False, as_index=False)[["train_loss", "train_acc", "val_acc"]].mean()


def param_change_frame(runs: Sequence[RunRef]) -> pd.DataFrame:
    """Per method and layer: ‖θ_ft − θ_0‖/‖θ_0‖, mean and std over seeds, layers input -> output."""
    rows = [{"method": r.label, "seed": r.seed, "index": i, "layer": name, "change": _number(c),
             "multiplier": float(r.result["multipliers"][i])}
            for r in runs
            for i, (name, c) in enumerate(zip(readable_layers(r.result["layers"]), r.result["param_change"]))]
    if not rows:
        return pd.DataFrame(columns=["method", "index", "layer", "change", "std", "multiplier"])
    frame = pd.DataFrame(rows)
    out = frame.groupby(["method", "index", "layer"], sort=False, as_index=False).agg(
        change=("change", "mean"), std=("change", "std"), multiplier=("multiplier", "mean"))
    return out.fillna({"std": 0.0})


def shots_frame(runs: Sequence[RunRef], num_classes: int, metric: str = "test_acc") -> pd.DataFrame:
    """Per method and K (examples per class): accuracy mean, std and number of seeds."""
    rows = [{"method": r.label, "seed": r.seed, "K": (r.shots or 0) // num_classes, "acc": _number(r.result[metric])}
            for r in runs]
    if not rows:
        return pd.DataFrame(columns=["method", "K", "mean", "std", "seeds"])
    out = pd.DataFrame(rows).groupby(["method", "K"], sort=False, as_index=False).agg(
        mean=("acc", "mean"), std=("acc", "std"), seeds=("acc", "size"))
    order = {label: i for i, label in enumerate(dict.fromkeys(out["method"]))}  # the methods as chosen
    return out.fillna({"std": 0.0}).sort_values(["method", "K"],
                                                key=lambda c: c.map(order) if c.name == "method" else c)


# ----------------------------------------------------------------------------- the Results page

def runs_frame(store: ResultStore) -> pd.DataFrame:
    """Every stored run, one row each, with a readable method label (empty frame when none)."""
    frame = store.frame()
    if frame.empty:
        return frame
    frame = frame.copy()
    frame["label"] = [method_label(m, p) for m, p in zip(frame["method"], frame["params"])]
    return frame


def recipe_options(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The distinct fine-tuning recipes among `frame`'s runs, the most used first."""
    from .experiments.tables import RECIPE_FIELDS

    fields_ = [f for f in RECIPE_FIELDS if f in frame.columns]
    counts = frame.groupby(fields_, dropna=False).size().sort_values(ascending=False, kind="stable")
    return [dict(zip(fields_, (v.item() if hasattr(v, "item") else v for v in values))) for values in counts.index]


def recipe_label(recipe: dict[str, Any], options: Sequence[dict[str, Any]]) -> str:
    """'shots 20 · epochs 1 · lr 0.001 · module', plus any other field that differs between the options."""
    main = ("shots", "epochs", "lr", "granularity")
    varying = [k for k in recipe if k not in main and len({str(o.get(k)) for o in options}) > 1]
    return " · ".join(f"{k} {recipe[k]}" if k != "granularity" else str(recipe[k]) for k in (*main, *varying)
                      if k in recipe)


def select_runs(frame: pd.DataFrame, setup: str, recipe: dict[str, Any], severity: int, corruptions: Sequence[str],
                seeds: Sequence[int], current_only: bool) -> pd.DataFrame:
    """The runs of one setup and recipe, input-level ones of the chosen corruptions at `severity`."""
    keep = frame["setup"] == setup
    for name, value in recipe.items():
        keep &= frame[name] == value
    is_input = frame["shift"] == "input"
    keep &= ~is_input | (frame["corruption"].isin(corruptions) & (frame["severity"] == severity))
    keep &= frame["seed"].isin(seeds)
    if current_only:
        keep &= frame["code_version"] == code_version()
    return frame[keep]


def table_one(frame: pd.DataFrame, setup: str, recipe: dict[str, Any], severity: int, corruptions: Sequence[str],
              methods: Sequence[str], seeds: Sequence[int], current_only: bool,
              metric: str = "test_acc") -> dict[str, Any]:
    """The seed's Table 1 through the engine's `experiments.tables.table1` (the CLI `table` numbers).

    Returns "display" (method × shift level, 'mean ± std' %), "long" (method, shift, mean, std, seeds),
    "best" ((method, level) pairs best in their column), "notes" and "caption".
    """
    from .experiments.tables import LEVELS, Selection, caption, table1
    from .methods import method_class, method_names

    shifts = list(get_setup(setup).shifts)
    sel = Selection(setup=setup, shifts=shifts, corruptions=list(corruptions), severity=severity, recipe=recipe,
                    default_params={m: method_class(m).resolve_params({}) for m in method_names()},
                    code_version=code_version() if current_only else None, methods=list(methods), seeds=list(seeds))
    table = table1(frame, sel, metric)
    long = pd.DataFrame([{"method": m, "shift": LEVELS[s], "mean": c.mean, "std": c.std, "seeds": c.seeds}
                         for m in table.methods for s in shifts if (c := table.cells.get((m, s)))],
                        columns=["method", "shift", "mean", "std", "seeds"])
    display = pd.DataFrame([{"method": m, **{LEVELS[s]: _cell_text(table.cells.get((m, s))) for s in shifts}}
                            for m in table.methods])
    return {"display": display, "long": long, "notes": table.notes, "caption": caption(table),
            "best": {(m, LEVELS[s]) for m, s in table.best}}


def _cell_text(cell: Any) -> str:
    """'83.4 ± 1.2' (the cell is already in percent), '83.4' for one seed, '—' for no run."""
    if cell is None:
        return "—"
    return f"{cell.mean:.1f}" if cell.std is None else f"{cell.mean:.1f} ± {cell.std:.1f}"


def criticality_grid(frame: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Module Criticality runs as a top-K × partial-epochs table of mean accuracy (per method, shift)."""
    if frame.empty:
        return pd.DataFrame(columns=["method", "shift", "topk", "partial_epochs", "mean", "runs"])
    crit = frame[frame["method"].str.startswith("criticality")]
    params = [p if isinstance(p, dict) else {} for p in crit["params"]]
    crit = crit.assign(topk=[p.get("topk") for p in params], partial_epochs=[p.get("partial_epochs") for p in params])
    crit = crit.dropna(subset=["topk", "partial_epochs"]).astype({"topk": int, "partial_epochs": int})
    if crit.empty:
        return pd.DataFrame(columns=["method", "shift", "topk", "partial_epochs", "mean", "runs"])
    return crit.groupby(["method", "shift", "topk", "partial_epochs"], as_index=False).agg(
        mean=(metric, "mean"), runs=(metric, "size"))
