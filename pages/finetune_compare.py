"""Fine-tune & compare: run the chosen methods on the chosen shift (progress per method and epoch), then
their accuracy table and per-epoch loss and accuracy curves. Stored runs show at once."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from autoft_core import dashboard_api as api
import pages as ui


def curves(history: pd.DataFrame, columns: dict[str, str], title: str, colours: dict[str, str],
           percent: bool = False) -> go.Figure:
    """One line per method and curve (`columns` maps a history column to its legend name)."""
    fig = go.Figure()
    for dash, (column, name) in zip(("solid", "dot"), columns.items()):
        for label, group in history.groupby("method", sort=False):
            fig.add_trace(go.Scatter(x=group["epoch"], y=group[column], mode="lines+markers", name=f"{label} · {name}",
                                     line={"color": colours[label], "dash": dash}))
    fig.update_layout(title=title, height=360, margin={"t": 50, "b": 10}, xaxis={"title": "epoch", "dtick": 1},
                      yaxis={"tickformat": ".0%" if percent else ""}, legend={"orientation": "h", "y": -0.25})
    return fig


def main() -> None:
    ui.frame("Fine-tune & compare")
    st.title("Fine-tune & compare")
    st.caption("Every chosen method × seed is one run: layer weights, fine-tuning with them, evaluation. "
               "Runs land in the result store, so a finished one is shown at once next time, in any tab.")
    recipe, problems = ui.recipe()
    task = ui.task_picker(recipe.paths)
    methods = ui.method_picker()
    runs = ui.run_panel(api.plan_runs(task, methods, recipe), recipe, problems, key="finetune")
    if not runs:
        st.info("No run of this selection is in the store yet: press **Run** above.")
        st.stop()
    st.subheader("Test accuracy (%)")
    st.caption("zero-shot: before fine-tuning; final: after the last epoch; best-val: the epoch with the best "
               "validation accuracy. Mean ± std over seeds.")
    ui.show_table(api.accuracy_table(runs), "accuracy")
    history = api.history_frame(runs)
    if history.empty:
        st.stop()
    colours = ui.colours(history["method"].tolist())
    left, right = st.columns(2)
    with left:
        ui.show_figure(curves(history, {"train_loss": "train loss"}, "Training loss", colours), "loss-curves")
    with right:
        ui.show_figure(curves(history, {"val_acc": "validation", "train_acc": "train"}, "Accuracy", colours,
                               percent=True),
                        "accuracy-curves")
    for label, extras in {run.label: run.result.get("extras") for run in runs}.items():
        if extras:
            ui.show_extras(label, extras)


with ui.guard("Drawing this page"):
    main()
