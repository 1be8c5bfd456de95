"""Layer weights: the multipliers α_l each chosen method picks, layer by layer from input to output, one
bar chart per method and a method × layer heatmap, raw scores on hover (visual sanity checks)."""
from __future__ import annotations

import streamlit as st

from ui import charts, commands, engine, frames, layout, notes, output, pickers
from ui.colours import method_of
from ui.export import task_meta
from ui.weights import weights

HOW = """
- Each bar is one layer, **input on the left, output on the right**; its height is the learning-rate
  multiplier α the method would use (0 freezes the layer, 1 trains it at the full learning rate).
- Hover a bar for the method's **raw score**, from which α is derived.
- The heatmap puts all methods side by side: dark cells are the layers a method trains most.
- Nothing is fine-tuned here (except inside methods that need it, such as criticality with
  partial_epochs > 0): see *Fine-tune & compare* for accuracies.
"""

with layout.page("Layer weights", HOW):
    task = pickers.task()
    methods = pickers.methods()
    settings, _ = pickers.settings_for(task)
    seed = settings.seeds[0]
    results: dict[str, dict] = {}
    for method, params in methods.items():
        label = engine.method_label(method, params)
        with layout.guard(f"Computing the {label} weights"):
            cfg = engine.run_config(task, method, params, settings.recipe, seed)
            results[label] = weights(cfg, settings, label)
            output.report().add_commands([commands.run_command(cfg, "weights", engine.store_path(), settings.device)])
    if not results:
        st.stop()
    frame = frames.weights_frame(results)
    for label, out in results.items():
        if note := notes.target_note(label, method_of(label), out.get("extras")):
            st.caption(note)
    cols = st.columns(2)
    for i, label in enumerate(results):
        with cols[i % 2]:
            meta = task_meta(f"Layer weights · {label}", task, settings.recipe, (seed,), method=label)
            output.show_figure(charts.weights_bar(frame[frame["method"] == label], label, meta), meta)
    meta = task_meta("Layer weights · methods × layers", task, settings.recipe, (seed,), methods=", ".join(results))
    output.show_figure(charts.weights_heatmap(frame, meta), meta)
    table = frame.pivot(index=["index", "name"], columns="method", values="weight")[list(results)].reset_index()
    output.show_table(table.drop(columns="index").rename(columns={"name": "layer"}),
                      task_meta("Layer weights", task, settings.recipe, (seed,), methods=", ".join(results)))
    for label, out in results.items():
        if extras := out.get("extras"):
            with st.expander(f"Details from {label}"):
                st.json(extras, expanded=False)
