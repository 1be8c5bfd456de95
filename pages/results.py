"""Results: run the whole table from here (shifts × corruptions × methods × seeds through the sweep engine,
with progress and Cancel), then Table 1 (methods × shift levels, input-level averaged over the chosen
corruptions, mean ± std over seeds), the per-corruption table and the matching runs; every table as CSV."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd
import streamlit as st

from autoft_core.experiments.plan import sweep_configs, task_corruption
from autoft_core.experiments.tables import LEVELS, caption, select, table1
from ui import charts, commands, engine, frames, layout, notes, output, pickers, run_panel, sidebar
from ui.export import Meta
from ui.widgets import PERSIST

HOW = """
- **Run the table** computes every shift × corruption × method × seed with the sidebar's recipe (runs
  already stored are reused); the CLI's `sweep` and `table` commands in the page report do the same.
- **Table 1**: rows are methods, columns shift levels; a cell is the mean ± std over seeds of the test
  accuracy (%), where each seed's input-level value is the mean over the chosen corruptions. Bold: the best
  of each column. The numbers are those of the CLI's `table`.
- A table holds runs of **one recipe**: pick it above the table. Chance level differs per shift (fewer
  classes on the feature-level shift).
"""
RUN_COLUMNS = ["shift", "corruption", "severity", "label", "seed", "shots", "epochs", "lr", "granularity",
               "zero_shot_acc", "test_acc", "best_val_test_acc", "best_val_epoch", "seconds", "code_version"]
FIRST_CORRUPTIONS = ("gaussian_noise", "frost", "jpeg_compression")


def _present(column: pd.Series) -> list:
    return sorted(column.dropna().unique().tolist(), key=str)


def run_table(setup: str, settings: engine.Settings, problems: list[str]) -> None:
    """The form that runs shifts × corruptions × methods × seeds through the sweep engine."""
    chosen = engine.setup(setup)
    cols = st.columns(2)
    shifts = cols[0].multiselect("Shifts", list(chosen.shifts), default=list(chosen.shifts),
                                 key=f"table.shifts.{setup}", **PERSIST)
    corruptions = cols[1].multiselect("Corruptions (input-level)", list(chosen.corruptions()), **PERSIST,
                                      default=[c for c in FIRST_CORRUPTIONS if c in chosen.corruptions()],
                                      key=f"table.corruptions.{setup}")
    methods = st.multiselect("Methods", engine.method_names(), default=engine.default_methods(engine.method_names()),
                             key="table.methods", **PERSIST)
    severity = st.select_slider("Severity (input-level)", [1, 2, 3, 4, 5], value=5, key="table.severity", **PERSIST)
    if not (shifts and methods and (corruptions or "input" not in shifts)):
        st.info("Pick at least one shift, one method and (for the input-level shift) one corruption.")
        return
    seeds = ",".join(map(str, settings.seeds))
    configs = sweep_configs(setup, ",".join(shifts), ",".join(corruptions) or "all", severity, ",".join(methods),
                            seeds, settings.recipe, settings.paths)
    output.report().add_commands([
        commands.sweep_command(setup, shifts, corruptions, severity, methods, settings.seeds, settings.recipe,
                               engine.store_path(), settings.device),
        commands.table_command(setup, severity, corruptions, methods, settings.seeds, settings.recipe, "test_acc",
                               store=engine.store_path())])
    run_panel.panel(configs, settings, problems, key="table", what="table runs")


def _all_of(container: Any, label: str, options: list, name: str) -> list:
    """A multiselect of every stored value, all chosen; a new value (a new run) starts a fresh selection."""
    return container.multiselect(label, options, default=options, key=f"results.{name}.{'|'.join(map(str, options))}")


def filters(rows: pd.DataFrame, recipe: dict[str, Any]) -> dict[str, Any]:
    """The table's selection: recipe, metric, severity, corruptions, methods, seeds, code version."""
    recipes = frames.recipe_options(rows)
    top = st.columns([2, 1])
    index = recipes.index(recipe) if recipe in recipes else 0
    chosen = top[0].selectbox("Recipe", recipes, index=index, format_func=lambda r: frames.recipe_label(r, recipes),
                              key="results.recipe", help="Runs of one fine-tuning recipe form a table; the "
                                                         "sidebar's recipe is chosen when it has runs.")
    metric = top[1].selectbox("Accuracy", list(frames.METRICS), format_func=lambda m: f"{frames.METRICS[m]} test",
                              key="results.metric")
    inputs = rows[rows["shift"] == "input"]
    with st.expander("Filters"):
        cols = st.columns(3)
        severities = _present(inputs["severity"]) or [5]
        severity = cols[0].selectbox("Severity (input-level)", severities, key="results.severity",
                                     index=severities.index(5) if 5 in severities else 0)
        corruptions = _all_of(cols[1], "Corruptions (averaged)", _present(inputs["corruption"]), "corruptions")
        seeds = _all_of(cols[2], "Seeds", _present(rows["seed"]), "seeds")
        methods = _all_of(cols[0], "Methods", _present(rows["method"]), "methods")
        current = cols[1].checkbox("Only runs of the current engine code", key="results.current", value=True,
                                   help="Runs made before the engine last changed stay in the store too.")
    return {"recipe": chosen, "metric": metric, "severity": severity, "corruptions": corruptions,
            "methods": methods, "seeds": seeds, "current_only": current}


def chance(setup: str, shifts: list[str], paths: Any) -> dict[str, float]:
    """Chance level (%) per shift level, from each shift's number of classes."""
    return {LEVELS.get(s, s): 100 / pickers.classes(engine.Task(setup, s, task_corruption(s, None)), paths)
            for s in shifts}


def table_section(setup: str, rows: pd.DataFrame, chosen: dict[str, Any], paths: Any) -> None:
    sel = engine.selection(setup, chosen["recipe"], chosen["severity"], chosen["corruptions"], chosen["methods"],
                           chosen["seeds"], chosen["current_only"])
    table = table1(rows, sel, chosen["metric"])
    built = frames.table_frames(table)
    if built["display"].empty:
        st.info("No run of the default hyper-parameters matches these filters.")
        return
    meta = Meta("Table 1", setup, ", ".join(sel.shifts), ", ".join(sel.corruptions), sel.severity, sel.recipe,
                tuple(chosen["seeds"]), {"metric": f"{frames.METRICS[chosen['metric']]} test accuracy (%)",
                                         "methods": ", ".join(table.methods)})
    st.caption(caption(table) + " Bold: the best of each column.")
    shift_of = {LEVELS.get(x, x): x for x in sel.shifts}  # column name -> shift
    display = built["display"].style.apply(lambda col: ["font-weight: bold" if (m, shift_of.get(col.name)) in table.best
                                                        else "" for m in built["display"]["method"]])
    output.show_table(built["numeric"], meta, display=display, key="table1")
    for note in table.notes:
        st.caption(f"Note: {note}")
    for shift in sel.shifts:
        if line := notes.measured(table, shift):
            st.caption(line)
    output.show_figure(charts.table_chart(built["long"], f"{frames.METRICS[chosen['metric']]} test accuracy", meta,
                                          chance(setup, list(sel.shifts), paths)), meta, key="table1")
    st.subheader("Input-level, per corruption (%)")
    per = frames.corruption_frames(rows, sel, chosen["metric"])
    if per["display"].empty:
        st.info("No input-level run matches these filters.")
    else:
        output.show_table(per["numeric"], replace(meta, title="Input-level accuracy per corruption", shift="input"),
                          display=per["display"], key="per-corruption")
    runs = select(rows, sel)
    with st.expander(f"The {len(runs)} runs of this table"):
        output.show_table(runs[[c for c in RUN_COLUMNS if c in runs.columns]], Meta("Runs of Table 1", setup),
                          key="runs")


with layout.page("Results", HOW):
    setup = pickers.setup_choice(sidebar.paths())
    settings, problems = sidebar.settings(setup)
    with st.expander("Run the table", expanded=True, icon=":material/play_arrow:"):
        run_table(setup, settings, problems)
    st.subheader("Table 1: methods × shifts (%)")
    frame = output.stored_runs()
    rows = frame[frame["setup"] == setup] if not frame.empty else frame
    if rows.empty:
        st.info("No run of this setup is stored yet: run the table above (or the CLI's sweep command).")
        st.stop()
    table_section(setup, rows, filters(rows, settings.recipe.to_dict()), settings.paths)
