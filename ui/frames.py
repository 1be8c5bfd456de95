"""The dashboard's tables as pandas frames, built from run records and the store's rows (no Streamlit).

Accuracies are in percent everywhere, with mean and standard deviation over seeds in separate numeric
columns (sample std, ddof 1; 0 for one seed). Table 1 and its run selection come from
`autoft_core.experiments.tables`, so the dashboard shows the CLI's `table` numbers.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from autoft_core.config import RunConfig
from autoft_core.experiments.tables import (LEVELS, RECIPE_FIELDS, Selection, Table, cell_text, per_corruption,
                                            select)

from .export import MAIN_RECIPE

METRICS = {"test_acc": "final", "best_val_test_acc": "best-val", "zero_shot_acc": "zero-shot"}


@dataclass(frozen=True)
class RunRef:
    """One stored run as the pages group it: method label, seed, shots and its record."""

    label: str
    seed: int
    shots: int
    result: dict


def readable_layers(names: Sequence[str]) -> list[str]:
    """Layer names for axes: dots become spaces; kept unique so categorical axes never merge two."""
    out: list[str] = []
    for i, name in enumerate(names):
        label = name.replace(".", " ")
        out.append(label if label not in out else f"{label} #{i + 1}")
    return out


def _spread(frame: pd.DataFrame, by: list[str], column: str, scale: float = 100.0) -> pd.DataFrame:
    """Mean, std (ddof 1, 0 for one value) and count of `column` × `scale` per `by` group, groups in order."""
    values = frame.assign(_v=frame[column] * scale)
    out = values.groupby(by, sort=False, as_index=False).agg(mean=("_v", "mean"), std=("_v", "std"),
                                                             n=("_v", "size"))
    return out.fillna({"std": 0.0})


# ----------------------------------------------------------------------------- one task's runs

def weights_frame(results: dict[str, dict]) -> pd.DataFrame:
    """Long table (method, index, layer, name, weight, score), layers ordered input -> output."""
    rows = [{"method": label, "index": i, "layer": shown, "name": raw, "weight": float(out["weights"][i]),
             "score": float(out["scores"][i])}
            for label, out in results.items()
            for i, (raw, shown) in enumerate(zip(out["layers"], readable_layers(out["layers"])))]
    return pd.DataFrame(rows, columns=["method", "index", "layer", "name", "weight", "score"])


def accuracy_table(runs: Sequence[RunRef]) -> pd.DataFrame:
    """Per method: zero-shot, final and best-val test accuracy (mean and std over seeds, %; a diverged run has
    no final accuracy), best epochs, time and status ("ok" or "diverged at epoch N")."""
    flat = pd.DataFrame([{"method": r.label, "seed": r.seed, **{k: _number(r.result[k]) for k in METRICS},
                          "best_val_epoch": r.result["best_val_epoch"], "seconds": r.result["seconds"],
                          "status": run_status(r.result)} for r in runs])
    if flat.empty:
        return flat
    out = flat.groupby("method", sort=False, as_index=False).agg(
        seeds=("seed", "size"), best_epochs=("best_val_epoch", lambda s: ", ".join(map(str, s))),
        seconds=("seconds", "mean"), status=("status", lambda s: ", ".join(dict.fromkeys(s))))
    for metric, name in METRICS.items():
        spread = _spread(flat, ["method"], metric)
        out[f"{name} %"], out[f"{name} std"] = spread["mean"].to_numpy(), spread["std"].to_numpy()
    return out[["method", "seeds", *(f"{n} {s}" for n in METRICS.values() for s in ("%", "std")), "best_epochs",
                "seconds", "status"]]


def run_status(result: dict) -> str:
    """'ok', or 'diverged at epoch 3' (the run's training blew up there; it is stored as such)."""
    return f"diverged at epoch {result.get('diverged_epoch')}" if result.get("status") == "diverged" else "ok"


def _number(value: Any) -> float:
    """A stored number as a float; null (a non-finite number, or none) as NaN."""
    return float("nan") if value is None else float(value)


def history_frame(runs: Sequence[RunRef]) -> pd.DataFrame:
    """Per method and epoch: train loss, train and validation accuracy (%), mean and std over seeds, phase."""
    rows = [{"method": r.label, "seed": r.seed, "epoch": h["epoch"], "phase": h.get("phase", ""),
             "train_loss": h["train_loss"], "train_acc": h["train_acc"], "val_acc": h["val_acc"]}
            for r in runs for h in r.result.get("history", [])]
    columns = ["method", "epoch", "phase"]
    if not rows:
        return pd.DataFrame(columns=columns + [f"{c} {s}" for c in ("train_loss", "train_acc", "val_acc")
                                               for s in ("mean", "std")])
    flat = pd.DataFrame(rows)
    out = flat.groupby(columns, sort=False, as_index=False).size()[columns]
    for column, scale in (("train_loss", 1.0), ("train_acc", 100.0), ("val_acc", 100.0)):
        spread = _spread(flat, columns, column, scale)
        out[f"{column} mean"], out[f"{column} std"] = spread["mean"].to_numpy(), spread["std"].to_numpy()
    return out


def param_change_frame(runs: Sequence[RunRef]) -> pd.DataFrame:
    """Per method and layer: ‖θ_ft − θ_0‖/‖θ_0‖, mean and std over seeds, final multiplier,
    input -> output."""
    rows = [{"method": r.label, "seed": r.seed, "index": i, "layer": name, "change": float(c),
             "multiplier": float(r.result["multipliers"][i])}
            for r in runs
            for i, (name, c) in enumerate(zip(readable_layers(r.result["layers"]), r.result["param_change"]))]
    if not rows:
        return pd.DataFrame(columns=["method", "index", "layer", "change", "std", "multiplier"])
    flat = pd.DataFrame(rows)
    out = _spread(flat, ["method", "index", "layer"], "change", 1.0).rename(columns={"mean": "change"})
    out["multiplier"] = flat.groupby(["method", "index", "layer"], sort=False)["multiplier"].mean().to_numpy()
    return out.drop(columns="n")


def shots_frame(runs: Sequence[RunRef], num_classes: int, metric: str = "test_acc") -> pd.DataFrame:
    """Per method and K (examples per class): total shots, accuracy mean and std (%) and seeds, K ascending.
    Several runs of one method, seed and K (one per corruption: the input level) are averaged first, so
    the std is over seeds."""
    rows = [{"method": r.label, "seed": r.seed, "K": r.shots // num_classes, "shots": r.shots,
             "acc": r.result[metric]} for r in runs]
    if not rows:
        return pd.DataFrame(columns=["method", "K", "shots", "mean %", "std", "seeds"])
    per_seed = pd.DataFrame(rows).groupby(["method", "K", "shots", "seed"], sort=False, as_index=False)["acc"].mean()
    out = _spread(per_seed, ["method", "K", "shots"], "acc")
    out = out.rename(columns={"mean": "mean %", "n": "seeds"})
    order = {label: i for i, label in enumerate(dict.fromkeys(out["method"]))}  # the methods as chosen
    return out.sort_values(["method", "K"], key=lambda c: c.map(order) if c.name == "method" else c,
                           ignore_index=True)


# ----------------------------------------------------------------------------- the store's runs

def runs_frame(frame: pd.DataFrame, label: Any) -> pd.DataFrame:
    """The store's rows with a readable method label (`label(method, params)`); empty frame when none."""
    if frame.empty:
        return frame
    return frame.assign(label=[label(m, p) for m, p in zip(frame["method"], frame["params"])])


def recipe_options(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The distinct fine-tuning recipes among `frame`'s runs, the most used first."""
    names = [f for f in RECIPE_FIELDS if f in frame.columns]
    counts = frame.groupby(names, dropna=False).size().sort_values(ascending=False, kind="stable")
    return [dict(zip(names, (v.item() if hasattr(v, "item") else v for v in values))) for values in counts.index]


def recipe_label(recipe: dict[str, Any], options: Sequence[dict[str, Any]]) -> str:
    """'shots 20 · epochs 1 · lr 0.001 · module', plus any other field that differs between the options."""
    varying = [k for k in recipe if k not in MAIN_RECIPE and len({str(o.get(k)) for o in options}) > 1]
    return " · ".join(f"{k} {recipe[k]}" if k != "granularity" else str(recipe[k]) for k in (*MAIN_RECIPE, *varying)
                      if k in recipe)


def numeric_wide(long: pd.DataFrame, column: str, order: Sequence[str]) -> pd.DataFrame:
    """A long (method, `column`, mean, std, seeds) frame as one row per method with '<value> mean %' and
    '<value> std' columns per `column` value (numbers, for CSV)."""
    out = pd.DataFrame({"method": list(dict.fromkeys(long["method"]))})
    for value in order:
        part = long[long[column] == value].set_index("method")
        out[f"{value} mean %"] = out["method"].map(part["mean"])
        out[f"{value} std"] = out["method"].map(part["std"])
        out[f"{value} seeds"] = out["method"].map(part["seeds"]).astype("Int64")
    return out


def table_frames(table: Table, column: str = "shift") -> dict[str, pd.DataFrame]:
    """A table's cells (Table 1: method × shift level) as "display" (the CLI's 'mean ± std' text), "long"
    (one row per method and `column` value) and "numeric"."""
    columns = [LEVELS.get(s, s) for s in table.selection.shifts]
    cells = {(m, LEVELS.get(s, s)): c for (m, s), c in table.cells.items()}
    long = pd.DataFrame([{"method": m, column: v, "mean": c.mean, "std": c.std or 0.0, "seeds": c.seeds}
                         for m in table.methods for v in columns if (c := cells.get((m, v)))],
                        columns=["method", column, "mean", "std", "seeds"])
    display = pd.DataFrame([{"method": m, **{v: cell_text(cells.get((m, v))) for v in columns}}
                            for m in table.methods])
    return {"display": display, "long": long, "numeric": numeric_wide(long, column, columns)}


def corruption_frames(frame: pd.DataFrame, sel: Selection, metric: str) -> dict[str, pd.DataFrame]:
    """Input-level accuracy per method and corruption (mean ± std over seeds, %): the engine's
    `per_corruption` table (the CLI's `table --per-corruption`) as display, long and numeric frames."""
    return table_frames(per_corruption(frame, sel, metric), column="corruption")


def grid_frame(frame: pd.DataFrame, sel: Selection, method: str, defaults: dict[str, Any],
               axes: Sequence[str], metric: str) -> pd.DataFrame:
    """A method's stored runs over its grid `axes` (other parameters at their `defaults`): per grid point the
    accuracy mean and std over seeds (%) and the number of seeds."""
    columns = [*axes, "mean %", "std", "seeds"]
    rows = frame[frame["method"] == method] if not frame.empty else frame
    if rows.empty:
        return pd.DataFrame(columns=columns)
    params = [{**defaults, **(p if isinstance(p, dict) else {})} for p in rows["params"]]
    keep = [all(p.get(k) == v for k, v in defaults.items() if k not in axes) for p in params]
    rows = rows.assign(method=[json.dumps(p, sort_keys=True, default=str) for p in params])[keep]  # a cell per point
    picked = select(rows, replace(sel, default_params={}, methods=None))
    if picked.empty:
        return pd.DataFrame(columns=columns)
    points = pd.DataFrame([json.loads(m) for m in picked["method"]], index=picked.index)[list(axes)]
    out = _spread(picked.join(points), list(axes), metric).rename(columns={"mean": "mean %", "n": "seeds"})
    return out.sort_values(list(axes), ignore_index=True)[columns]


# ----------------------------------------------------------------------------- planning

@dataclass(frozen=True)
class Estimate:
    """A time estimate for runs from the store's timings: seconds for the runs it could estimate."""

    seconds: float
    estimated: int  # runs with a similar stored run
    total: int
    basis: int  # stored runs it was estimated from


def estimate(stored: pd.DataFrame, configs: Sequence[RunConfig]) -> Estimate:
    """Seconds for `configs`: per run, the median seconds per epoch (+1 for the weights and evaluation) of
    the stored runs of the same setup and method (else the same setup) with the nearest shots, times its
    epochs + 1; runs with no such stored run are not counted."""
    seconds, estimated, basis = 0.0, 0, set()
    if stored.empty or not configs:
        return Estimate(0.0, 0, len(configs), 0)
    timed = stored.dropna(subset=["seconds", "epochs", "shots"])
    per_epoch = timed["seconds"] / (timed["epochs"] + 1)
    for cfg in configs:
        same_setup = timed["setup"] == cfg.setup
        similar = same_setup & (timed["method"] == cfg.method)
        chosen = timed[similar if similar.any() else same_setup]
        if chosen.empty or cfg.recipe is None:
            continue
        distance = (np.log(chosen["shots"].astype(float)) - math.log(cfg.recipe.shots)).abs()
        nearest = chosen.index[distance == distance.min()]
        seconds += float(per_epoch[nearest].median()) * (cfg.recipe.epochs + 1)
        estimated += 1
        basis |= set(nearest)
    return Estimate(seconds, estimated, len(configs), len(basis))


def effective_shots(shots: int, counts: Sequence[int]) -> int:
    """The training images a shots value draws from a pool with `counts` per class: shots // classes per
    class, or all of a class that holds fewer."""
    per_class = shots // max(len(counts), 1)
    return sum(min(per_class, n) for n in counts)


def shift_size_frame(sizes: dict[str, Any]) -> pd.DataFrame:
    """`shift_sizes()`'s answer as a table (%): per task its zero-shot accuracy and the drop from the clean
    target's accuracy (none for the feature level, whose source model saw other subclasses)."""
    clean = sizes["clean_acc"]
    rows = [{"shift": task["shift"], "corruption": task["corruption"] or "—",
             "zero-shot %": 100 * task["zero_shot_acc"],
             "drop from clean (points)": (None if clean is None or task["shift"] == "feature"
                                          else 100 * (clean - task["zero_shot_acc"]))}
            for task in sizes["tasks"]]
    return pd.DataFrame(rows, columns=["shift", "corruption", "zero-shot %", "drop from clean (points)"])
