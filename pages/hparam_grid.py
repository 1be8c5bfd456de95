"""Hyper-parameter grid: any method that declares grid parameters (`Method.grid()`, e.g. criticality's
top-K × partial epochs, the paper's Figure 4) run over its grid on one task, then the grid as a heatmap."""
from __future__ import annotations

import streamlit as st

from autoft_core.experiments.plan import grid_configs
from ui import charts, commands, engine, frames, layout, output, pickers, run_panel
from ui.export import task_meta
from ui.widgets import PERSIST

HOW = """
- Only methods that **declare a grid** are offered; the values are the ones the method declares (the CLI's
  `grid` command tries the same).
- Every cell of the heatmap is the mean test accuracy (%) over the seeds of one combination; hover for the
  number of seeds. Other hyper-parameters stay at their defaults.
- For Module Criticality, partial_epochs = 0 probes the source data only (Algorithm 3): that row never looks
  at the target; partial_epochs > 0 fine-tunes briefly on the target first (Algorithm 4).
"""

with layout.page("Hyper-parameter grid", HOW):
    gridded = [m for m in engine.method_names() if engine.method_class(m).grid()]
    if not gridded:
        st.info("No registered method declares a hyper-parameter grid.")
        st.stop()
    method = st.selectbox("Method", gridded, key="hgrid.method", **PERSIST)
    cls = engine.method_class(method)
    task = pickers.task()
    settings, problems = pickers.settings_for(task)
    cols = st.columns(len(cls.grid()))
    values = {axis: cols[i].multiselect(axis, list(declared), default=list(declared), key=f"hgrid.{method}.{axis}",
                                        help=cls.params[axis].help)
              for i, (axis, declared) in enumerate(cls.grid().items())}
    if not all(values.values()):
        st.info("Pick at least one value on every axis.")
        st.stop()
    seeds = ",".join(map(str, settings.seeds))
    configs = grid_configs(task.setup, task.shift, task.corruption, task.severity, method, values, seeds,
                           settings.recipe, settings.paths)
    output.report().add_commands([commands.grid_command(configs[0], values, settings.seeds, engine.store_path(),
                                                        settings.device)])
    run_panel.panel(configs, settings, problems, key="hgrid", what=f"grid runs of {method}")
    metric = st.radio("Accuracy", list(frames.METRICS), format_func=frames.METRICS.get, horizontal=True,
                      key="hgrid.metric", **PERSIST)
    sel = engine.selection(task.setup, settings.recipe.to_dict(), task.severity, [task.corruption or ""],
                           seeds=settings.seeds, shifts=[task.shift])
    grid = frames.grid_frame(output.stored_runs(), sel, method, cls.resolve_params({}), list(values), metric)
    grid = grid[grid[list(values)].isin(values).all(axis=1)]
    if grid.empty:
        st.info("No run of this grid is in the store yet: press **Run** above.")
        st.stop()
    meta = task_meta(f"{method}: {' × '.join(values)} ({frames.METRICS[metric]} accuracy)", task, settings.recipe,
                     settings.seeds, method=method)

    def tick(axis: str, value: object) -> str:
        return "all" if value == cls.params[axis].all_means else str(value)

    output.show_figure(charts.grid_chart(grid, list(values), meta, tick), meta)
    output.show_table(grid, meta)
