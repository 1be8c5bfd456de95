"""Shot scaling: test accuracy against the number of target examples per class, one line per method,
with the spread over seeds; every point is an ordinary run, so it lands in the store."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from autoft_core import dashboard_api as api
import pages as ui


@st.cache_data(show_spinner="Counting the target examples…")
def levels(task: api.Task, paths: api.DataPaths, seeds: tuple[int, ...]) -> tuple[int, list[int]]:
    """(classes, the K every seed's target pool can supply), cached: it builds the tasks."""
    return api.shot_levels(task, paths, seeds)


def scaling_chart(frame: pd.DataFrame, metric: str) -> go.Figure:
    """Mean accuracy per K with ± std error bars over seeds, log-scaled K."""
    colours = ui.colours(frame["method"].tolist())
    fig = go.Figure()
    for label, group in frame.groupby("method", sort=False):
        fig.add_trace(go.Scatter(x=group["K"], y=group["mean"], mode="lines+markers", name=label,
                                 line={"color": colours[label]},
                                 error_y={"type": "data", "array": group["std"], "visible": True},
                                 customdata=group["seeds"],
                                 hovertemplate="K = %{x}<br>acc = %{y:.1%}<br>seeds: %{customdata}<extra></extra>"))
    fig.update_layout(height=420, margin={"t": 30, "b": 10}, legend={"orientation": "h", "y": 1.1},
                      xaxis={"title": "target examples per class (K)", "type": "log",
                             "tickvals": sorted(frame["K"].unique().tolist())},
                      yaxis={"title": f"{api.METRICS[metric]} test accuracy", "tickformat": ".0%"})
    return fig


def main() -> None:
    ui.frame("Shot scaling")
    st.title("Shot scaling")
    st.caption("How each method's accuracy grows with the number of labelled target examples. The sidebar's "
               "shots setting is replaced here by K examples per class (shots = K × classes).")
    recipe, problems = ui.recipe()
    task = ui.task_picker(recipe.paths)
    methods = ui.method_picker()
    classes, allowed = 0, []
    with ui.guard("Counting the target examples"):
        classes, allowed = levels(task, recipe.paths, recipe.seeds)
    if not allowed:
        st.stop()
    left, right = st.columns([2, 1])
    ks = left.multiselect("K (examples per class)", allowed, default=allowed, key=f"shots.k.{task.setup}",
                          help=f"Only the K the target pool can supply for every one of the {classes} classes.")
    metric = right.radio("Accuracy", ["test_acc", "best_val_test_acc"], format_func=api.METRICS.get,
                         horizontal=True, key="shots.metric", **ui.PERSIST)
    if not ks:
        st.info("Pick at least one K.")
        st.stop()
    plan = api.plan_runs(task, methods, recipe, shots=[k * classes for k in sorted(ks)])
    runs = ui.run_panel(plan, recipe, problems, key="shots")
    if not runs:
        st.info("No run of this selection is in the store yet: press **Run** above.")
        st.stop()
    frame = api.shots_frame(runs, classes, metric)
    ui.show_figure(scaling_chart(frame, metric), "shot-scaling")
    ui.show_table(frame, "shot-scaling")


with ui.guard("Drawing this page"):
    main()
