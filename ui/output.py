"""Charts and tables on the page, each with labelled downloads (PNG from the chart's camera button, HTML,
CSV), collected into the page report; and the result store's runs, cached until the store changes."""
from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from autoft_core.store import ResultStore

from . import engine, frames
from .export import Meta, Report, csv_text, figure_html, slug

REPORT_KEY = "report.current"


def start_report(title: str) -> None:
    """Begin collecting what this run of the page shows."""
    st.session_state[REPORT_KEY] = Report(title)


def report() -> Report:
    return st.session_state.setdefault(REPORT_KEY, Report("AutoFT Explorer"))


def report_button() -> None:
    """The page's figures, tables and CLI commands as one self-contained HTML file (made when clicked)."""
    current = report()
    st.sidebar.download_button(
        "Page report (HTML)", data=current.html, file_name=f"{slug(current.title)}-report.html", mime="text/html",
        key="report.download", on_click="ignore", icon=":material/description:", width="stretch",
        help="Every figure and table of this page with what it shows, and the CLI commands that reproduce them.")


def show_figure(fig: go.Figure, meta: Meta, key: str | None = None) -> None:
    """The chart (its camera button saves a labelled PNG) and a labelled, self-contained HTML download."""
    name = key or slug(meta.filename(""))
    st.plotly_chart(fig, key=f"chart.{name}", width="stretch", theme=None, config={  # as exported
        "displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": meta.filename(""), "scale": 2}})
    st.download_button("HTML", data=lambda: figure_html(fig, meta), file_name=meta.filename("html"), mime="text/html",
                       key=f"html.{name}", on_click="ignore", icon=":material/download:",
                       help="The interactive chart with its title and facts as one HTML file; for a PNG use the "
                            "camera icon in the chart's toolbar.")
    report().add(meta, fig)


def show_table(frame: pd.DataFrame, meta: Meta, display: Any = None, key: str | None = None, **kwargs: Any) -> None:
    """`display` (default: the frame, floats to 3 significant digits) on the page; the numeric frame as CSV."""
    name = key or slug(meta.filename(""))
    floats = frame.select_dtypes("float").columns
    shown = display if display is not None else frame.style.format("{:.3g}", subset=floats, na_rep="—")
    st.dataframe(shown, hide_index=True, key=f"table.{name}", **kwargs)
    st.download_button("CSV", data=csv_text(frame, meta), file_name=meta.filename("csv"), mime="text/csv",
                       key=f"csv.{name}", on_click="ignore", icon=":material/download:",
                       help="Numbers only (mean and std in separate columns), after '# key: value' lines saying "
                            "what they are.")
    report().add(meta, frame)


@st.cache_resource
def _store(path: str) -> ResultStore:
    return ResultStore(path)


def store() -> ResultStore:
    """The shared result store (one object per process; SQLite WAL makes concurrent tabs safe)."""
    return _store(str(engine.store_path()))


@st.cache_data(show_spinner="Reading the result store…")
def _runs(path: str, version: tuple[int, ...]) -> pd.DataFrame:
    return frames.runs_frame(ResultStore(path).frame(), engine.method_label)


def stored_runs() -> pd.DataFrame:
    """Every stored run with a method label (cached until the store file changes, so other tabs' runs show)."""
    path = engine.store_path()
    store()  # creates the file on first use
    return _runs(str(path), engine.store_version(path))
