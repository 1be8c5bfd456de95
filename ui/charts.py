"""The dashboard's plotly figures, built from `ui.frames` tables (no Streamlit).

Every figure carries its title and facts (`export.Meta`), y-axis titles, one colour per method
(`ui.colours`), accuracies in percent with a chance line, and margins computed from its longest tick
label (plus plotly's automargin), so layer names are never clipped on screen, in HTML or in PNG.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .colours import colour
from .export import Meta

FONT_SIZE = 12
CHAR_PX = 7.5  # an upper bound of the average glyph width at FONT_SIZE (the default font)
LAYER_ANGLE = 45  # layer names are written at -45 degrees
LAYER_AXIS = "layer (input → output)"
WEIGHT_AXIS = "learning-rate multiplier α"
BAND_ALPHA = 0.18
TITLE_PX = 45  # the title line and the gap below the facts


def text_px(labels: Sequence[str]) -> float:
    """The width in pixels the longest label may take."""
    return CHAR_PX * max((len(str(s)) for s in labels), default=0)


def layer_margins(layers: Sequence[str], left_labels: Sequence[str] = ()) -> dict[str, int]:
    """Bottom margin for the slanted layer names plus the axis title, and a left margin that holds both
    the y tick labels and how far the first slanted name reaches left of its tick."""
    slant, layers = math.sin(math.radians(LAYER_ANGLE)), [str(s) for s in layers]
    first = CHAR_PX * len(layers[0]) * slant if layers else 0.0
    return {"b": int(text_px(layers) * slant + 60), "l": int(max(first, text_px(left_labels) + 50, 70))}


def finish(fig: go.Figure, meta: Meta, height: int, margin: dict[str, int] | None = None) -> go.Figure:
    """Title and, beneath it, the facts at the figure's top left (the top margin holds them), font, height
    and margins (at least the given ones)."""
    lines = meta.subtitle().count("<br>") + 1
    fig.update_layout(title={"text": meta.title, "subtitle": {"text": meta.subtitle(), "font": {"size": 11}},
                             "x": 0.01, "xanchor": "left", "xref": "container", "y": 1, "yanchor": "top",
                             "yref": "container", "pad": {"t": 12}, "font": {"size": 15}},
                      font={"size": FONT_SIZE}, height=height,
                      margin={"r": 30, "l": 70, "b": 60, **(margin or {}), "t": TITLE_PX + 15 * lines
                              + (margin or {}).get("t", 0)})
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


def _band(fig: go.Figure, x: Sequence, mean: Sequence[float], std: Sequence[float], hex_colour: str, name: str,
          **where: int) -> None:
    """A shaded mean ± std band (drawn only where some std is non-zero)."""
    if not any(s > 0 for s in std):
        return
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    upper = [m + s for m, s in zip(mean, std)]
    lower = [m - s for m, s in zip(mean, std)]
    fig.add_trace(go.Scatter(x=[*x, *reversed(list(x))], y=[*upper, *reversed(lower)], fill="toself",
                             fillcolor=f"rgba({r},{g},{b},{BAND_ALPHA})", line={"width": 0}, hoverinfo="skip",
                             showlegend=False, name=f"{name} ± std", legendgroup=name), **where)


def chance_line(fig: go.Figure, chance_percent: float | None) -> None:
    """A dashed horizontal line at chance level (100 / classes %)."""
    if chance_percent:
        fig.add_hline(y=chance_percent, line={"dash": "dash", "color": "#777", "width": 1},
                      annotation_text=f"chance {chance_percent:.0f}%", annotation_position="bottom right",
                      annotation_font={"size": 11, "color": "#555"})


def _percent_axis(fig: go.Figure, title: str) -> None:
    fig.update_yaxes(title=title, ticksuffix="%", rangemode="tozero")


# ----------------------------------------------------------------------------- layer weights

def _layer_bars(frame: pd.DataFrame, label: str) -> go.Bar:
    return go.Bar(x=frame["layer"], y=frame["weight"], customdata=frame["score"], marker_color=colour(label),
                  name=label, legendgroup=label, showlegend=False,
                  hovertemplate="%{x}<br>α = %{y:.3f}<br>raw score = %{customdata:.4g}<extra>" + label + "</extra>")


def weights_bar(frame: pd.DataFrame, label: str, meta: Meta) -> go.Figure:
    """One bar per layer (input → output): one method's multiplier, the raw score on hover."""
    fig = go.Figure(_layer_bars(frame, label))
    top = max(1.0, float(frame["weight"].max()))
    fig.update_xaxes(title=LAYER_AXIS, tickangle=-LAYER_ANGLE, type="category")
    fig.update_yaxes(title=WEIGHT_AXIS, range=[0, top * 1.05])
    return finish(fig, meta, 360 + int(text_px(frame["layer"]) * 0.7), layer_margins(frame["layer"]))


def weights_heatmap(frame: pd.DataFrame, meta: Meta) -> go.Figure:
    """Methods × layers, colour = multiplier, raw score on hover."""
    weights = frame.pivot(index="method", columns="index", values="weight")
    scores = frame.pivot(index="method", columns="index", values="score")
    layers = frame.drop_duplicates("index").sort_values("index")["layer"].tolist()
    order = list(dict.fromkeys(frame["method"]))
    fig = go.Figure(go.Heatmap(z=weights.loc[order].values, x=layers, y=order, customdata=scores.loc[order].values,
                               colorscale="Blues", zmin=0, zmax=max(1.0, float(frame["weight"].max())),
                               colorbar={"title": {"text": "α"}},
                               hovertemplate="%{y} · %{x}<br>α = %{z:.3f}<br>raw score = %{customdata:.4g}"
                                             "<extra></extra>"))
    fig.update_xaxes(title=LAYER_AXIS, tickangle=-LAYER_ANGLE, type="category")
    fig.update_yaxes(title="method", autorange="reversed", type="category")
    margin = layer_margins(layers, order)
    return finish(fig, meta, 120 + 40 * len(order) + margin["b"], margin)


def weights_grid(frame: pd.DataFrame, shifts: Sequence[str], methods: Sequence[str], meta: Meta) -> go.Figure:
    """A row per shift, a column per method: each cell the method's multipliers over the layers (the
    paper's per-shift figures); `frame` is `frames.weights_frame` with a 'shift' column."""
    fig = make_subplots(rows=len(shifts), cols=len(methods), shared_xaxes=True, shared_yaxes=True,
                        row_titles=list(shifts), column_titles=list(methods), vertical_spacing=0.04,
                        horizontal_spacing=0.02)
    for r, shift in enumerate(shifts, start=1):
        for c, label in enumerate(methods, start=1):
            part = frame[(frame["shift"] == shift) & (frame["method"] == label)]
            fig.add_trace(_layer_bars(part, label), row=r, col=c)  # the column titles name the methods
    layers = frame.drop_duplicates("index").sort_values("index")["layer"].tolist()
    fig.update_xaxes(tickangle=-LAYER_ANGLE, type="category", categoryorder="array", categoryarray=layers)
    fig.update_xaxes(title=LAYER_AXIS, row=len(shifts), col=(len(methods) + 1) // 2)
    fig.update_yaxes(range=[0, max(1.0, float(frame["weight"].max())) * 1.05])
    fig.update_yaxes(title="α", col=1)
    margin = {**layer_margins(layers), "t": 25, "r": 45}  # the column and row titles
    return finish(fig, meta, 120 + 170 * len(shifts) + margin["b"], margin)


# ----------------------------------------------------------------------------- runs

def curves(history: pd.DataFrame, column: str, y_title: str, meta: Meta, percent: bool = False,
           chance: float | None = None) -> go.Figure:
    """Per method: the mean over seeds by epoch, a ± std band, and a dotted line where a method's phase
    changes (LP-FT: linear probe → fine-tuning)."""
    fig = go.Figure()
    for label, group in history.groupby("method", sort=False):
        hue = colour(label)
        _band(fig, group["epoch"].tolist(), group[f"{column} mean"].tolist(), group[f"{column} std"].tolist(), hue,
              label)
        fig.add_trace(go.Scatter(x=group["epoch"], y=group[f"{column} mean"], mode="lines+markers", name=label,
                                 legendgroup=label, line={"color": hue},
                                 hovertemplate=f"{label}<br>epoch %{{x}}<br>{y_title} %{{y:.3g}}<extra></extra>"))
        phases = group["phase"].tolist()
        for before, after, epoch in zip(phases, phases[1:], group["epoch"].tolist()[1:]):
            if before and after and before != after:
                fig.add_vline(x=epoch - 0.5, line={"dash": "dot", "color": hue, "width": 1.5},
                              annotation_text=f"{label}: {before} → {after}", annotation_position="top left",
                              annotation_font={"size": 11, "color": hue})
    fig.update_xaxes(title="epoch", dtick=1 if history["epoch"].nunique() <= 20 else None)
    if percent:
        _percent_axis(fig, y_title)
        chance_line(fig, chance)
    else:
        fig.update_yaxes(title=y_title)
    return finish(fig, meta, 420)


def change_chart(frame: pd.DataFrame, style: str, log: bool, meta: Meta) -> go.Figure:
    """Grouped bars or lines over the layers (input → output), one colour per method, ± std over seeds."""
    fig = go.Figure()
    for label, group in frame.groupby("method", sort=False):
        common = {"x": group["layer"], "y": group["change"], "name": label, "customdata": group["multiplier"],
                  "error_y": {"type": "data", "array": group["std"], "visible": bool(group["std"].any())},
                  "hovertemplate": "%{x}<br>change = %{y:.4f}<br>final α = %{customdata:.3f}"
                                   f"<extra>{label}</extra>"}
        if style == "Lines":
            fig.add_trace(go.Scatter(mode="lines+markers", line={"color": colour(label)}, **common))
        else:
            fig.add_trace(go.Bar(marker_color=colour(label), **common))
    fig.update_layout(barmode="group")
    fig.update_xaxes(title=LAYER_AXIS, tickangle=-LAYER_ANGLE, type="category")
    fig.update_yaxes(title="relative change ‖θ_ft − θ_0‖ / ‖θ_0‖", type="log" if log else "linear")
    margin = layer_margins(frame["layer"].unique().tolist())
    return finish(fig, meta, 440 + int(text_px(frame["layer"]) * 0.7), margin)


def scaling_chart(frame: pd.DataFrame, y_title: str, meta: Meta, chance: float | None) -> go.Figure:
    """Mean accuracy (%) per K examples per class with a ± std band over seeds, K on a log axis."""
    fig = go.Figure()
    for label, group in frame.groupby("method", sort=False):
        _band(fig, group["K"].tolist(), group["mean %"].tolist(), group["std"].tolist(), colour(label), label)
        fig.add_trace(go.Scatter(x=group["K"], y=group["mean %"], mode="lines+markers", name=label, legendgroup=label,
                                 line={"color": colour(label)}, customdata=group[["shots", "seeds"]].values,
                                 hovertemplate="K = %{x} per class (%{customdata[0]} shots)<br>%{y:.1f}%"
                                               "<br>seeds: %{customdata[1]}<extra>" + label + "</extra>"))
    fig.update_xaxes(title="target examples per class K (log scale)", type="log",
                     tickvals=sorted(frame["K"].unique().tolist()))
    _percent_axis(fig, y_title)
    chance_line(fig, chance)
    return finish(fig, meta, 440)


def table_chart(long: pd.DataFrame, y_title: str, meta: Meta, chance: dict[str, float] | None = None) -> go.Figure:
    """Table 1 as grouped bars (one colour per method) with ± std over seeds; chance per shift as a marker."""
    fig = go.Figure([go.Bar(x=g["shift"], y=g["mean"], name=method, marker_color=colour(method),
                            error_y={"type": "data", "array": g["std"]},
                            hovertemplate="%{x}<br>%{y:.1f}%<extra>" + method + "</extra>")
                     for method, g in long.groupby("method", sort=False)])
    if chance:
        fig.add_trace(go.Scatter(x=list(chance), y=list(chance.values()), mode="markers", name="chance",
                                 marker={"symbol": "line-ew-open", "size": 60, "color": "#777",
                                         "line": {"width": 2, "color": "#777"}},
                                 hovertemplate="%{x}: chance %{y:.0f}%<extra></extra>"))
    fig.update_layout(barmode="group")
    fig.update_xaxes(title="shift")
    _percent_axis(fig, y_title)
    return finish(fig, meta, 440)


def grid_chart(grid: pd.DataFrame, axes: Sequence[str], meta: Meta,
               tick: Callable[[str, Any], str] = lambda axis, value: str(value)) -> go.Figure:
    """A hyper-parameter grid: a heatmap of mean accuracy (%) over two axes, bars over one; `tick` names a
    value of an axis (e.g. "all" for topk 0)."""
    if len(axes) == 1:
        fig = go.Figure(go.Bar(x=[tick(axes[0], v) for v in grid[axes[0]]], y=grid["mean %"], error_y={"type": "data",
                                                                                         "array": grid["std"]},
                               marker_color="#0072B2", hovertemplate="%{x}: %{y:.1f}%<extra></extra>"))
        fig.update_xaxes(title=axes[0], type="category")
        _percent_axis(fig, "test accuracy")
        return finish(fig, meta, 380)
    y_axis, x_axis = axes[0], axes[1]
    z = grid.pivot_table(index=y_axis, columns=x_axis, values="mean %").sort_index()
    seeds = grid.pivot_table(index=y_axis, columns=x_axis, values="seeds").reindex_like(z)
    fig = go.Figure(go.Heatmap(z=z.values, x=[tick(x_axis, c) for c in z.columns], y=[tick(y_axis, k) for k in z.index],
                               customdata=seeds.values, colorscale="Viridis", texttemplate="%{z:.1f}",
                               colorbar={"title": {"text": "acc %"}, "ticksuffix": "%"},
                               hovertemplate=f"{y_axis} %{{y}} · {x_axis} %{{x}}<br>%{{z:.1f}}%"
                                             "<br>seeds: %{customdata}<extra></extra>"))
    fig.update_xaxes(title=x_axis, type="category")
    fig.update_yaxes(title=y_axis, type="category")
    return finish(fig, meta, 420)
