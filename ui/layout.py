"""The page frame: the navigation list, one call that draws a page's title, its "how to read this page"
note and the layout rules for narrow windows, the error guard, and the page report button."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from autoft_core.errors import AutoFTError

from . import output

LOG = logging.getLogger("autoft.dashboard")
PAGES = (  # (file, title, icon); the first is the default page
    ("pages/overview.py", "Overview", ":material/home:"),
    ("pages/layer_weights.py", "Layer weights", ":material/bar_chart:"),
    ("pages/shift_grid.py", "Weights by shift", ":material/grid_view:"),
    ("pages/finetune_compare.py", "Fine-tune & compare", ":material/model_training:"),
    ("pages/param_change.py", "Parameter change", ":material/difference:"),
    ("pages/shot_scaling.py", "Shot scaling", ":material/trending_up:"),
    ("pages/hparam_grid.py", "Hyper-parameter grid", ":material/apps:"),
    ("pages/results.py", "Results", ":material/table_chart:"),
)
# Columns wrap instead of squashing on narrow windows (900 px with the sidebar open); labels never break
# inside a word.
NARROW_CSS = """<style>
[data-testid="stHorizontalBlock"] { flex-wrap: wrap; row-gap: 0.5rem; }
[data-testid="stHorizontalBlock"] > [data-testid="stColumn"] { min-width: min(260px, 100%); }
[data-testid="stWidgetLabel"] p { word-break: normal; overflow-wrap: normal; }
@media (max-width: 1100px) {
  [data-testid="stMainBlockContainer"] { padding-left: 1.5rem; padding-right: 1.5rem; }
}
</style>"""


@contextmanager
def guard(what: str = "This step") -> Iterator[None]:
    """Show an AutoFTError's message inline, and any other failure as one short line (no traceback)."""
    try:
        yield
    except AutoFTError as exc:
        st.error(str(exc), icon="⚠️")
    except Exception as exc:  # the page must keep working; the details go to the server log
        LOG.exception("%s failed", what)
        st.error(f"{what} failed unexpectedly ({type(exc).__name__}: {exc}). Details are in the server log.",
                 icon="🛑")


def _leave_pages_folder_mode() -> None:
    """Streamlit runs a page straight from pages/ (its legacy folder mode, with file names as navigation)
    when a fresh server's first request is a page URL; app.py's st.navigation ends that mode, but only
    once app.py runs. So a page that finds the mode on ends it, and reruns through app.py once per session
    (Streamlit's AppTest turns the mode on before every run: a second rerun there would drop the click)."""
    from streamlit.runtime.pages_manager import PagesManager  # streamlit==1.67's flag for that mode

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        if not st.session_state.get("layout.rerun_through_app"):
            st.session_state["layout.rerun_through_app"] = True
            st.rerun()


@contextmanager
def page(title: str, how_to_read: str) -> Iterator[None]:
    """A page: title, a short "how to read this page", its body (errors shown inline) and its report."""
    _leave_pages_folder_mode()
    st.html(NARROW_CSS)
    st.title(title)
    with st.expander("How to read this page", icon=":material/help:"):
        st.markdown(how_to_read)
    output.start_report(title)
    output.report_button()  # its file is made on click, from all that this run of the page drew
    with guard("Drawing this page"):
        yield
