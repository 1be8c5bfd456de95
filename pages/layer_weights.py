"""Layer weights: the multipliers α_l each chosen method picks, layer by layer from input to output,
one bar chart per method and a method × layer heatmap, raw scores on hover (visual sanity checks)."""
from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from autoft_core import dashboard_api as api
import pages as ui

HOVER = "%{x}<br>α = %{y:.3f}<br>raw score = %{customdata:.4g}<extra></extra>"


def weights_for(task: api.Task, method: str, params: dict[str, Any], recipe: api.Recipe) -> dict:
    """One method's weights: from this server's memory, else computed inside an st.status."""
    cfg = api.run_config(task, method, params, recipe, recipe.seeds[0] if recipe.seeds else 0)
    memo, key = ui.weights_memo(), (cfg.key(), recipe.device, recipe.paths)
    if key not in memo:
        label = api.method_label(method, params)
        with st.status(f"Computing the {label} weights…") as box:
            out = api.layer_weights(cfg, recipe, status=lambda note: box.update(label=f"{label}: {note}"))
            box.update(label=f"{label}: weights in {out['seconds']:.1f}s", state="complete")
        memo[key] = out
    return memo[key]


def bar_chart(frame: pd.DataFrame, label: str, colour: str) -> go.Figure:
    """One bar per layer (input → output): the multiplier, with the raw score on hover."""
    fig = go.Figure(go.Bar(x=frame["layer"], y=frame["weight"], customdata=frame["score"], marker_color=colour,
                           hovertemplate=HOVER, name=label))
    top = max(1.0, float(frame["weight"].max()))
    fig.update_layout(title=label, height=320, margin={"t": 50, "b": 10}, showlegend=False,
                      yaxis={"title": "multiplier α", "range": [0, top * 1.05]}, xaxis={"title": None})
    return fig


def heatmap(frame: pd.DataFrame) -> go.Figure:
    """Methods × layers, colour = multiplier, raw score on hover."""
    weights = frame.pivot(index="method", columns="index", values="weight")
    scores = frame.pivot(index="method", columns="index", values="score")
    layers = frame.drop_duplicates("index").sort_values("index")["layer"].tolist()
    order = list(dict.fromkeys(frame["method"]))
    fig = go.Figure(go.Heatmap(z=weights.loc[order].values, x=layers, y=order, customdata=scores.loc[order].values,
                               colorscale="Blues", zmin=0, zmax=max(1.0, float(frame["weight"].max())),
                               colorbar={"title": "α"},
                               hovertemplate="%{y} · %{x}<br>α = %{z:.3f}<br>raw score = %{customdata:.4g}"
                                             "<extra></extra>"))
    fig.update_layout(title="Methods × layers", height=140 + 40 * len(order), margin={"t": 50, "b": 10},
                      yaxis={"autorange": "reversed"})
    return fig


def main() -> None:
    ui.frame("Layer weights")
    st.title("Layer weights")
    st.caption("What each method would set as the learning-rate multiplier of every layer, before any "
               "fine-tuning. Layers run from the input (left) to the output (right); hover a bar for the raw score.")
    recipe, _ = ui.recipe()
    task = ui.task_picker(recipe.paths)
    methods = ui.method_picker()
    results: dict[str, dict] = {}
    for method, params in methods.items():
        with ui.guard(f"Computing the {method} weights"):
            results[api.method_label(method, params)] = weights_for(task, method, params, recipe)
    if not results:
        st.stop()
    frame = api.weights_frame(results)
    colours = ui.colours(list(results))
    cols = st.columns(2)
    for i, label in enumerate(results):
        with cols[i % 2]:
            ui.show_figure(bar_chart(frame[frame["method"] == label], label, colours[label]), f"weights-{label}")
    ui.show_figure(heatmap(frame), "weights-heatmap")
    table = frame.pivot(index=["index", "name"], columns="method", values="weight")[list(results)].reset_index()
    ui.show_table(table.drop(columns="index").rename(columns={"name": "layer"}), "layer-weights")
    for label, out in results.items():
        if out.get("extras"):
            ui.show_extras(label, out["extras"])


with ui.guard("Drawing this page"):
    main()
