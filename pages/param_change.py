"""Parameter change: how far fine-tuning moved each layer, ‖θ_ft − θ_0‖ / ‖θ_0‖, across methods."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from autoft_core import dashboard_api as api
import pages as ui


def change_chart(frame: pd.DataFrame, style: str, log: bool) -> go.Figure:
    """Grouped bars or lines over the layers (input → output), one colour per method, std over seeds."""
    colours = ui.colours(frame["method"].tolist())
    fig = go.Figure()
    for label, group in frame.groupby("method", sort=False):
        common = {"x": group["layer"], "y": group["change"], "name": label, "customdata": group["multiplier"],
                  "error_y": {"type": "data", "array": group["std"], "visible": bool(group["std"].any())},
                  "hovertemplate": "%{x}<br>change = %{y:.4f}<br>final α = %{customdata:.3f}"
                                   f"<extra>{label}</extra>"}
        if style == "Lines":
            fig.add_trace(go.Scatter(mode="lines+markers", line={"color": colours[label]}, **common))
        else:
            fig.add_trace(go.Bar(marker_color=colours[label], **common))
    fig.update_layout(barmode="group", height=420, margin={"t": 30, "b": 10}, legend={"orientation": "h", "y": 1.1},
                      yaxis={"title": "‖θ_ft − θ_0‖ / ‖θ_0‖", "type": "log" if log else "linear"})
    return fig


def main() -> None:
    ui.frame("Parameter change")
    st.title("Parameter change")
    st.caption("The relative distance each layer travelled during fine-tuning. Frozen layers (α = 0) stay at 0.")
    recipe, problems = ui.recipe()
    task = ui.task_picker(recipe.paths)
    methods = ui.method_picker()
    runs = ui.run_panel(api.plan_runs(task, methods, recipe), recipe, problems, key="param_change")
    if not runs:
        st.info("No run of this selection is in the store yet: press **Run** above.")
        st.stop()
    frame = api.param_change_frame(runs)
    left, right = st.columns([2, 1])
    style = left.radio("Chart", ["Grouped bars", "Lines"], horizontal=True, key="param_change.style", **ui.PERSIST)
    log = right.checkbox("Log scale", key="param_change.log", **ui.PERSIST)
    ui.show_figure(change_chart(frame, style, log), "parameter-change")
    ui.show_table(frame.drop(columns="index"), "parameter-change")


with ui.guard("Drawing this page"):
    main()
