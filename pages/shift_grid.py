"""Weights by shift: a grid of layer-weight charts, a row per shift and a column per method (the paper's
per-shift figures), with what each shift should do beside what the methods chose."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from ui import charts, commands, engine, frames, layout, notes, output, pickers, sidebar
from ui.colours import method_of
from ui.export import Meta
from ui.weights import weights
from ui.widgets import PERSIST

HOW = """
- **Rows are shifts, columns are methods**; in each cell the bars are the layers from input (left) to
  output (right), their height the multiplier α.
- A method that *reads* the shift should move its large multipliers: early layers for the input-level row,
  middle layers for the feature-level row, the head for the output-level row.
- A method whose bars are the same in every row never looked at the target (see the notes below the grid).
"""

with layout.page("Weights by shift", HOW):
    left, right = st.columns(2)
    with left:
        setup = pickers.setup_choice(sidebar.paths())
    shifts = list(engine.setup(setup).shifts)
    chosen = right.multiselect("Shifts (rows)", shifts, default=shifts, key=f"grid.shifts.{setup}",
                               **PERSIST, format_func=lambda s: engine.SHIFT_NAMES.get(s, s))
    corruption, severity = pickers.corruption_choice(setup) if "input" in chosen else (None, 5)
    methods = pickers.methods()
    settings, _ = sidebar.settings(setup)
    if not chosen:
        st.info("Pick at least one shift.")
        st.stop()
    seed, parts, labels, extras = settings.seeds[0], [], [], {}
    for shift in chosen:
        task = engine.Task(setup, shift, corruption, severity)
        for method, params in methods.items():
            label = engine.method_label(method, params)
            with layout.guard(f"Computing the {label} weights on the {shift} shift"):
                cfg = engine.run_config(task, method, params, settings.recipe, seed)
                out = weights(cfg, settings, f"{label} · {shift}")
                parts.append(frames.weights_frame({label: out}).assign(shift=shift))
                labels.append(label)
                extras.setdefault(label, out.get("extras"))
                output.report().add_commands([commands.run_command(cfg, "weights", engine.store_path(),
                                                                   settings.device)])
    if not parts:
        st.stop()
    frame = pd.concat(parts, ignore_index=True)
    order = list(dict.fromkeys(labels))
    meta = Meta("Layer weights by shift", setup, ", ".join(chosen), corruption, severity if corruption else None,
                settings.recipe.to_dict(), (seed,), {"methods": ", ".join(order)})
    output.show_figure(charts.weights_grid(frame, chosen, order, meta), meta)
    for shift in chosen:
        st.markdown(f"**{engine.SHIFT_NAMES.get(shift, shift).capitalize()}.** {notes.SHIFT_STORIES.get(shift, '')}")
    for label in order:
        if note := notes.target_note(label, method_of(label), extras[label]):
            st.caption(note)
    wide = frame.pivot_table(index=["shift", "index", "name"], columns="method", values="weight", sort=False)
    output.show_table(wide[order].reset_index().drop(columns="index").rename(columns={"name": "layer"}), meta)
