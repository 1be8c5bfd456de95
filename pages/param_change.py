"""Parameter change: how far fine-tuning moved each layer, ‖θ_ft − θ_0‖ / ‖θ_0‖, across methods."""
from __future__ import annotations

import streamlit as st

from ui import charts, engine, frames, layout, output, pickers, run_panel
from ui.export import task_meta
from ui.widgets import PERSIST

HOW = """
- For every layer (input left, output right): the distance its weights travelled during fine-tuning,
  relative to where they started. A frozen layer (α = 0) stays at 0.
- Compare with *Layer weights*: a large multiplier should give a large change, but gradients matter too:
  a layer can get α = 1 and still barely move.
- Error bars: ± one std over seeds. Use the log scale when one layer dwarfs the others.
"""

with layout.page("Parameter change", HOW):
    task = pickers.task()
    methods = pickers.methods()
    settings, problems = pickers.settings_for(task)
    runs = run_panel.runs(engine.plan_runs(task, methods, settings), settings, problems, key="param_change")
    frame = frames.param_change_frame(runs)
    left, right = st.columns([2, 1])
    style = left.radio("Chart", ["Grouped bars", "Lines"], horizontal=True, key="param_change.style", **PERSIST)
    log = right.checkbox("Log scale", key="param_change.log", **PERSIST)
    meta = task_meta("Parameter change per layer", task, settings.recipe, sorted({r.seed for r in runs}))
    output.show_figure(charts.change_chart(frame, style, log, meta), meta)
    output.show_table(frame.drop(columns="index"), meta)
