"""Results: everything in the store as the method × shift table (input-level averaged over the chosen
corruptions, mean ± std over seeds), the Module Criticality top-K × partial-epochs grid, and the runs."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from autoft_core import dashboard_api as api
import pages as ui

RUN_COLUMNS = ["setup", "shift", "corruption", "severity", "label", "seed", "shots", "epochs", "lr", "granularity",
               "zero_shot_acc", "test_acc", "best_val_test_acc", "best_val_epoch", "seconds", "code_version"]


def _pick(column: pd.Series, label: str, key: str, container: DeltaGenerator) -> list:
    """A multiselect over a column's present values, all chosen by default."""
    options = sorted(column.dropna().unique().tolist(), key=str)
    return container.multiselect(label, options, default=options, key=key)


def filters(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The runs the user keeps, and the accuracy to tabulate."""
    top = st.columns(3)
    setup = top[0].selectbox("Setup", sorted(frame["setup"].unique()), key="results.setup")
    metric = top[1].selectbox("Accuracy", list(api.METRICS), format_func=lambda m: api.METRICS[m] + " test accuracy",
                              key="results.metric")
    current = top[2].checkbox("Only runs of the current engine code", key="results.current",
                              help="Runs computed before the engine last changed are kept in the store too.")
    rows = frame[frame["setup"] == setup]
    if current:
        rows = rows[rows["code_version"] == api.current_code_version()]
    with st.expander("Filters", expanded=False):
        cols = st.columns(3)
        methods = _pick(rows["label"], "Methods", "results.methods", cols[0])
        corruptions = _pick(rows["corruption"], "Corruptions (input-level, averaged)", "results.corruptions", cols[1])
        severities = _pick(rows["severity"][rows["shift"] == "input"], "Severities", "results.severities", cols[2])
        shots = _pick(rows["shots"], "Shots", "results.shots", cols[0])
        epochs = _pick(rows["epochs"], "Epochs", "results.epochs", cols[1])
        seeds = _pick(rows["seed"], "Seeds", "results.seeds", cols[2])
    is_input = rows["shift"] == "input"
    keep = (rows["label"].isin(methods) & rows["shots"].isin(shots) & rows["epochs"].isin(epochs)
            & rows["seed"].isin(seeds)
            & (~is_input | (rows["corruption"].isin(corruptions) & rows["severity"].isin(severities))))
    return rows[keep], metric


def table_chart(long: pd.DataFrame, metric: str) -> go.Figure:
    """The method × shift table as grouped bars with ± std over seeds."""
    rows = [c for c in long.columns if c not in ("shift", "mean", "std", "seeds")]
    long = long.assign(row=long[rows].astype(str).agg(" · ".join, axis=1))
    colours = ui.colours(long["row"].tolist())
    fig = go.Figure([go.Bar(x=g["shift"], y=g["mean"], name=row, marker_color=colours[row],
                            error_y={"type": "data", "array": g["std"].fillna(0)})
                     for row, g in long.groupby("row", sort=False)])
    fig.update_layout(barmode="group", height=400, margin={"t": 30, "b": 10}, legend={"orientation": "h", "y": 1.12},
                      yaxis={"title": f"{api.METRICS[metric]} test accuracy", "tickformat": ".0%"})
    return fig


def criticality_section(rows: pd.DataFrame, metric: str) -> None:
    """Heatmap of Module Criticality accuracy over top-K (rows) and partial epochs (columns)."""
    st.subheader("Module Criticality: top-K × partial epochs")
    grid = api.criticality_grid(rows, metric)
    if grid.empty:
        st.info("No Module Criticality runs here yet. Run criticality-identity / criticality-random with "
                "several `topk` and `partial_epochs` values (Fine-tune page, or the sweep commands).")
        return
    left, right = st.columns(2)
    method = left.selectbox("Method", sorted(grid["method"].unique()), key="results.crit_method")
    shift = right.selectbox("Shift", sorted(grid[grid["method"] == method]["shift"].unique()), key="results.crit_shift")
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
    frame = pd.DataFrame()
    with ui.guard("Reading the result store"):
        frame = ui.stored_runs()
    if frame.empty:
        st.info("The store is empty: run something on the Fine-tune & compare page (or the sweep commands).")
        st.stop()
    rows, metric = filters(frame)
    if rows.empty:
        st.info("No run matches these filters.")
        st.stop()
    st.subheader("Methods × shifts (%)")
    st.caption("Input-level: averaged over the chosen corruptions per seed, then mean ± std over seeds.")
    display, long = api.results_table(rows, metric)
    ui.show_table(display, "methods-x-shifts")
    ui.show_figure(table_chart(long, metric), "methods-x-shifts")
    criticality_section(rows, metric)
    with st.expander(f"All {len(rows)} matching runs"):
        ui.show_table(rows[[c for c in RUN_COLUMNS if c in rows.columns]], "runs")


main()
