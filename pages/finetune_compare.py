"""Fine-tune & compare: run the chosen methods on the chosen shift (progress per run and epoch, Cancel),
then their accuracy table and per-epoch curves with a ± std band over seeds. Stored runs show at once."""
from __future__ import annotations

import streamlit as st

from ui import charts, engine, frames, layout, notes, output, pickers, run_panel
from ui.colours import method_of
from ui.export import task_meta

HOW = """
- Each method × seed is one run: the method's layer weights, fine-tuning with them, evaluation on the
  target's test split. Finished runs are stored, so they show at once next time, in any tab.
- **zero-shot**: the source model before fine-tuning; **final**: after the last epoch; **best-val**: the
  epoch with the best validation accuracy. Percent, mean and std over the seeds.
- Curves: the line is the mean over seeds, the shaded band ± one std; the dashed line is chance level; a
  dotted vertical line marks where a method changes phase (LP-FT: linear probe → fine-tuning).
"""

with layout.page("Fine-tune & compare", HOW):
    task = pickers.task()
    methods = pickers.methods()
    settings, problems = pickers.settings_for(task)
    runs = run_panel.runs(engine.plan_runs(task, methods, settings), settings, problems, key="finetune")
    seeds, classes = sorted({r.seed for r in runs}), pickers.classes(task, settings.paths)
    st.subheader("Test accuracy (%)")
    st.caption(notes.chance_note(classes))
    output.show_table(frames.accuracy_table(runs), task_meta("Test accuracy", task, settings.recipe, seeds))
    for label, extras in {r.label: r.result.get("extras") for r in runs}.items():
        if note := notes.target_note(label, method_of(label), extras):
            st.caption(note)
    history = frames.history_frame(runs)
    if history.empty:
        st.stop()
    left, right = st.columns(2)
    with left:
        meta = task_meta("Training loss", task, settings.recipe, seeds)
        output.show_figure(charts.curves(history, "train_loss", "training loss (cross-entropy)", meta), meta)
    with right:
        meta = task_meta("Validation accuracy", task, settings.recipe, seeds)
        output.show_figure(charts.curves(history, "val_acc", "validation accuracy", meta, percent=True,
                                         chance=100 / classes), meta)
