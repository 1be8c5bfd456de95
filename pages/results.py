"""Results: everything in the store as the seed's Table 1 (methods × shift levels, input-level averaged
over the chosen corruptions, mean ± std over seeds), the Module Criticality top-K × partial-epochs grid,
and the matching runs; every table as CSV, every chart as HTML or PNG."""
from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from autoft_core import dashboard_api as api
import pages as ui

RUN_COLUMNS = ["shift", "corruption", "severity", "label", "seed", "shots", "epochs", "lr", "granularity",
               "status", "diverged_epoch", "zero_shot_acc", "test_acc", "best_val_test_acc", "best_val_epoch",
               "seconds", "code_version"]


def _present(column: pd.Series) -> list:
    return sorted(column.dropna().unique().tolist(), key=str)


def filters(frame: pd.DataFrame) -> dict[str, Any]:
    """The table's selection: setup, recipe, severity, corruptions, methods, seeds, code version, metric."""
    top = st.columns([1, 2, 1])
    setup = top[0].selectbox("Setup", _present(frame["setup"]), key="results.setup")
    rows = frame[frame["setup"] == setup]
    recipes = api.recipe_options(rows)
    recipe = top[1].selectbox("Recipe", recipes, format_func=lambda r: api.recipe_label(r, recipes),
                              key=f"results.recipe.{setup}", help="Runs of one fine-tuning recipe form a table.")
    metric = top[2].selectbox("Accuracy", list(api.METRICS), format_func=lambda m: f"{api.METRICS[m]} test",
                              key="results.metric")
    inputs = rows[rows["shift"] == "input"]
    with st.expander("Filters"):
        cols = st.columns(3)
        severities = _present(inputs["severity"]) or [5]
        severity = cols[0].selectbox("Severity (input-level)", severities, key="results.severity",
                                     index=severities.index(5) if 5 in severities else 0)
        corruptions = _present(inputs["corruption"])
        chosen = cols[1].multiselect("Corruptions (averaged)", corruptions, default=corruptions,
                                     key="results.corruptions")
        seeds = cols[2].multiselect("Seeds", _present(rows["seed"]), default=_present(rows["seed"]),
                                    key="results.seeds")
        methods = cols[0].multiselect("Methods", _present(rows["method"]), default=_present(rows["method"]),
                                      key="results.methods")
        current = cols[1].checkbox("Only runs of the current engine code", key="results.current",
                                   help="Runs made before the engine last changed stay in the store too.")
    return {"setup": setup, "recipe": recipe, "severity": severity, "corruptions": chosen, "methods": methods,
            "seeds": seeds, "current_only": current, "metric": metric}


def table_chart(long: pd.DataFrame, metric: str) -> go.Figure:
    """Table 1 as grouped bars (one colour per method) with ± std over seeds."""
    colours = ui.colours(long["method"].tolist())
    fig = go.Figure([go.Bar(x=g["shift"], y=g["mean"], name=method, marker_color=colours[method],
                            error_y={"type": "data", "array": g["std"].fillna(0)})
                     for method, g in long.groupby("method", sort=False)])
    fig.update_layout(barmode="group", height=400, margin={"t": 30, "b": 10}, legend={"orientation": "h", "y": 1.12},
                      yaxis={"title": f"{api.METRICS[metric]} test accuracy (%)"})
    return fig


def table_section(frame: pd.DataFrame, chosen: dict[str, Any]) -> None:
    st.subheader("Methods × shifts (%)")
    table = api.table_one(frame, **chosen)
    if table["display"].empty:
        st.info("No run of the default hyper-parameters matches these filters.")
        return
    st.caption(table["caption"] + " Bold: the best of each column.")
    best = table["best"]
    styled = table["display"].style.apply(
        lambda col: ["font-weight: bold" if (m, col.name) in best else "" for m in table["display"]["method"]])
    ui.show_table(styled, "table1")
    for note in table["notes"]:
        st.caption(f"Note: {note}")
    ui.show_figure(table_chart(table["long"], chosen["metric"]), "table1")


def criticality_section(rows: pd.DataFrame, metric: str) -> None:
    """Heatmap of Module Criticality accuracy over top-K (rows) and partial epochs (columns)."""
    st.subheader("Module Criticality: top-K × partial epochs")
    grid = api.criticality_grid(rows, metric)
    if grid.empty:
        st.info("No Module Criticality runs here yet. Run criticality-identity / criticality-random with "
                "several `topk` and `partial_epochs` values (Fine-tune page, or the `grid` command).")
        return
    left, right = st.columns(2)
    method = left.selectbox("Method", _present(grid["method"]), key="results.crit_method")
    shift = right.selectbox("Shift", _present(grid[grid["method"] == method]["shift"]), key="results.crit_shift")
    cell = grid[(grid["method"] == method) & (grid["shift"] == shift)]
    z = cell.pivot(index="topk", columns="partial_epochs", values="mean").sort_index()
    runs = cell.pivot(index="topk", columns="partial_epochs", values="runs").reindex_like(z)
    fig = go.Figure(go.Heatmap(z=z.values, x=[str(c) for c in z.columns], y=[str(k) if k else "all" for k in z.index],
                               customdata=runs.values, colorscale="Viridis", texttemplate="%{z:.1%}",
                               colorbar={"title": "acc", "tickformat": ".0%"},
                               hovertemplate="top-K %{y} · %{x} partial epochs<br>acc = %{z:.1%}"
                                             "<br>runs: %{customdata}<extra></extra>"))
    fig.update_layout(height=360, margin={"t": 30, "b": 10}, xaxis={"title": "partial epochs e", "type": "category"},
                      yaxis={"title": "top-K layers kept", "type": "category"})
    ui.show_figure(fig, f"criticality-grid-{method}-{shift}")
    ui.show_table(cell, f"criticality-grid-{method}-{shift}")


def main() -> None:
    ui.frame("Results")
    st.title("Results")
    st.caption("Everything in the result store: runs from this dashboard, the command line and the sweeps.")
    frame = None
    with ui.guard("Reading the result store"):
        frame = ui.stored_runs()
    if frame is None:  # the store is unreadable: its message is shown above, not "the store is empty"
        st.stop()
    if frame.empty:
        st.info("The store is empty: run something on the Fine-tune & compare page (or the sweep commands).")
        st.stop()
    chosen = filters(frame)
    with ui.guard("Building the table"):
        table_section(frame, chosen)
    rows = api.select_runs(frame, chosen["setup"], chosen["recipe"], chosen["severity"], chosen["corruptions"],
                           chosen["seeds"], chosen["current_only"])
    criticality_section(rows, chosen["metric"])
    with st.expander(f"All {len(rows)} runs of this setup and recipe"):
        ui.show_table(rows[[c for c in RUN_COLUMNS if c in rows.columns]], "runs")


with ui.guard("Drawing this page"):
    main()
