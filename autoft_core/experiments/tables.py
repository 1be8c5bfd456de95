"""Table 1 from the result store: rows = methods, one column per shift level, mean ± std over seeds.

The input-level value of one seed is the mean over the chosen corruptions; the mean and the sample
standard deviation (ddof 1) are then taken over seeds. Diverged runs are left out with a note; failed
ones are ignored. Pure pandas on `ResultStore.frame()` rows, so
the layout can be checked against a hand computation.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from ..core.recipe import field_names

LEVELS = {"input": "input-level", "feature": "feature-level", "output": "output-level"}
RECIPE_FIELDS = field_names()  # a Table 1 cell never mixes recipes
_CELL = ["method", "shift", "corruption", "seed"]


@dataclass(frozen=True)
class Selection:
    """Which stored runs make the table: setup, shifts, corruptions/severity, recipe, method params, version."""

    setup: str
    shifts: Sequence[str]
    corruptions: Sequence[str]
    severity: int
    recipe: dict[str, Any]
    default_params: dict[str, dict[str, Any]]  # registered methods: only their default hyper-parameters
    code_version: str | None  # None: any version (the newest run of each cell wins)
    methods: Sequence[str] | None = None  # None: every method with runs, registry order first
    seeds: Sequence[int] | None = None


@dataclass(frozen=True)
class Cell:
    """One table cell: mean and standard deviation over seeds (%), and the seed count."""

    mean: float
    std: float | None  # None with a single seed
    seeds: int


@dataclass
class Table:
    """Cells by (method, shift) in percent, the best of each column, and notes on incomplete cells."""

    metric: str
    selection: Selection
    methods: list[str]
    cells: dict[tuple[str, str], Cell]
    best: set[tuple[str, str]]
    notes: list[str] = field(default_factory=list)


def table1_selection(setup: str, shifts: Sequence[str], corruptions: Sequence[str], severity: int,
                     recipe: dict[str, Any], current_only: bool = True, methods: Sequence[str] | None = None,
                     seeds: Sequence[int] | None = None) -> Selection:
    """Table 1's runs, as the CLI's `table` and the dashboard both select them: registered methods at their
    default hyper-parameters, one recipe, input-level runs of `corruptions` at `severity`, and only this
    code version's runs unless `current_only` is off."""
    from ..config import code_version
    from ..methods import method_names, resolve_params

    return Selection(setup=setup, shifts=list(shifts), corruptions=list(corruptions), severity=severity,
                     recipe=dict(recipe), default_params={m: resolve_params(m, {}) for m in method_names()},
                     code_version=code_version() if current_only else None,
                     methods=None if methods is None else list(methods), seeds=None if seeds is None else list(seeds))


def select(frame: pd.DataFrame, sel: Selection) -> pd.DataFrame:
    """The runs `sel` names, one per (method, shift, corruption, seed): the newest where several match."""
    if frame.empty:
        return frame
    keep = (frame["setup"] == sel.setup) & frame["shift"].isin(sel.shifts)
    is_input = frame["shift"] == "input"
    keep &= ~is_input | (frame["corruption"].isin(sel.corruptions) & (frame["severity"] == sel.severity))
    for name, value in sel.recipe.items():
        keep &= frame[name] == value
    keep &= pd.Series([m not in sel.default_params or p == sel.default_params[m]
                       for m, p in zip(frame["method"], frame["params"])], index=frame.index)
    if sel.code_version is not None:
        keep &= frame["code_version"] == sel.code_version
    if sel.methods is not None:
        keep &= frame["method"].isin(sel.methods)
    if sel.seeds is not None:
        keep &= frame["seed"].isin(sel.seeds)
    if "status" in frame:  # a failed run has no numbers (it is retried by the next sweep)
        keep &= frame["status"] != "failed"
    return frame[keep].sort_values("created").drop_duplicates(_CELL, keep="last")


def table1(frame: pd.DataFrame, sel: Selection, metric: str = "test_acc") -> Table:
    """Aggregate the selected runs: per seed (input: mean over corruptions), then mean ± std over seeds."""
    runs, notes = _without_diverged(select(frame, sel), "shift")
    table = Table(metric, sel, _methods(runs, sel), {}, set(), notes)
    if runs.empty:
        return table
    per_seed = runs.groupby(["method", "shift", "seed"])[metric].agg(["mean", "count"]).reset_index()
    for row in per_seed[(per_seed["shift"] == "input") & (per_seed["count"] < len(sel.corruptions))].itertuples():
        table.notes.append(f"{row.method}, seed {row.seed}: input-level averages {row.count} of "
                           f"{len(sel.corruptions)} corruptions")
    for (method, shift), group in per_seed.groupby(["method", "shift"]):
        table.cells[method, shift] = _cell(group["mean"] * 100)
    _mark_best(table)
    most = max(c.seeds for c in table.cells.values())
    table.notes += [f"{m}, {LEVELS.get(s, s)}: {c.seeds} of {most} seeds" for (m, s), c in table.cells.items()
                    if c.seeds < most]
    return table


def per_corruption(frame: pd.DataFrame, sel: Selection, metric: str = "test_acc") -> Table:
    """Input-level runs as methods × corruptions (the columns), mean ± std over seeds (%); diverged runs
    left out, and said so."""
    runs, notes = _without_diverged(select(frame, replace(sel, shifts=["input"])), "corruption")
    present = set(runs.get("corruption", []))
    columns = replace(sel, shifts=[c for c in sel.corruptions if c in present])
    table = Table(metric, columns, _methods(runs, sel), {}, set(), notes)
    for (method, corruption), group in runs.groupby(["method", "corruption"]):
        table.cells[method, corruption] = _cell(group[metric] * 100)
    _mark_best(table)
    return table


def _without_diverged(runs: pd.DataFrame, column: str) -> tuple[pd.DataFrame, list[str]]:
    """The runs that did not diverge (a diverged run has no final accuracy: left out of the means), and a
    note for each (method, `column`) cell that lost runs so."""
    if "status" not in runs:
        return runs, []
    diverged = runs[runs["status"] == "diverged"].groupby(["method", column]).size()
    notes = [f"{m}, {LEVELS.get(c, c)}: {n} diverged run{'s' if n > 1 else ''} left out (lower the lr)"
             for (m, c), n in diverged.items()]
    return runs[runs["status"] != "diverged"], notes


def _cell(values: pd.Series) -> Cell:
    """One cell from its per-seed values in %: mean, standard deviation (None for one seed) and seed count."""
    return Cell(float(values.mean()), float(values.std()) if len(values) > 1 else None, len(values))


def _methods(runs: pd.DataFrame, sel: Selection) -> list[str]:
    """The methods with runs: the selection's (or registry) order first, then any others by name."""
    order = list(sel.methods or sel.default_params)
    methods = [m for m in order if m in set(runs.get("method", []))]
    return methods + sorted(set(runs.get("method", [])) - set(methods))


def _mark_best(table: Table) -> None:
    """Mark the best mean of each column (ties all marked)."""
    for shift in table.selection.shifts:
        column = {m: c.mean for (m, s), c in table.cells.items() if s == shift}
        if column:
            table.best |= {(m, shift) for m, v in column.items() if v >= max(column.values()) - 1e-9}


def cell_text(cell: Cell | None) -> str:
    """'75.0 ± 7.1', '40.0' for a single seed, '—' for no runs (the dashboard's format)."""
    if cell is None:
        return "—"
    return f"{cell.mean:.1f}" if cell.std is None else f"{cell.mean:.1f} ± {cell.std:.1f}"


def _grid(table: Table, marked: str) -> list[list[str]]:
    """Header and one row per method, best cells wrapped as `marked` (a format with {})."""
    shifts = table.selection.shifts
    rows = [["method", *(LEVELS.get(s, s) for s in shifts)]]
    for m in table.methods:
        cells = [(cell_text(table.cells.get((m, s))), (m, s) in table.best) for s in shifts]
        rows.append([m, *(marked.format(text) if best else text for text, best in cells)])
    return rows


def caption(table: Table) -> str:
    """One line saying what the numbers are: metric, seeds, corruptions, severity, recipe, code version."""
    sel = table.selection
    seeds = sorted({c.seeds for c in table.cells.values()}) or [0]
    count = f"{seeds[-1]} seed{'s' if seeds[-1] != 1 else ''}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]} seeds"
    recipe = ", ".join(f"{k} {v}" for k, v in sel.recipe.items())
    version = f"code version {sel.code_version}" if sel.code_version else "any code version"
    if not set(sel.shifts) <= set(LEVELS):  # per_corruption: the columns are corruptions
        return (f"Input-level per corruption - {sel.setup}: {table.metric} (%), mean ± std over {count}; "
                f"severity {sel.severity}; {recipe}; {version}.")
    return (f"Table 1 - {sel.setup}: {table.metric} (%), mean ± std over {count}; input-level = mean over "
            f"{len(sel.corruptions)} corruptions at severity {sel.severity}; {recipe}; {version}.")


def to_markdown(table: Table) -> str:
    """A caption, a markdown table with the best of each column in bold, and notes."""
    header, *body = _grid(table, "**{}**")
    lines = [caption(table), "", "| " + " | ".join(header) + " |", "|:--" + "|--:" * (len(header) - 1) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    if table.notes:
        lines += ["", *(f"- note: {n}" for n in table.notes)]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """The same grid as CSV, the best of each column suffixed with `*`."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(_grid(table, "{}*"))
    return out.getvalue()
