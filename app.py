"""AutoFT Explorer: `streamlit run app.py`. The landing page; the views are the files in pages/.

Streamlit's pages-folder convention (what AppTest runs); every page draws the same sidebar through
`pages.frame`, and the settings live in st.session_state, so all pages share them.
"""
from __future__ import annotations

from typing import Any

import streamlit as st

from autoft_core import dashboard_api as api
import pages as ui

SHIFT_STORIES = {
    "input": "The same classes, but the images are corrupted (noise, blur, weather, compression…): "
             "the first layers, which read pixels, are the ones that should move most.",
    "feature": "The same superclasses, but made of subclasses the model never saw (digits: the source "
               "knows 0–4, the target asks for 5–9 under the labels 0–4): the middle layers matter.",
    "output": "The same images, but the labels are permuted (here y → 9 − y): only the head needs to change.",
}


@st.cache_data(show_spinner="Loading sample images…")
def _samples(task: api.Task, paths: Any) -> dict[str, Any]:
    return api.shift_samples(task, paths, n=8)


def _image_row(title: str, images: list, labels: list[int]) -> None:
    st.caption(title)
    st.image(images, caption=[f"label {y}" for y in labels], width=72)


def _shift_tabs(recipe: api.Recipe) -> None:
    """For each shift of the digits setup: source images with their labels above the shifted target."""
    choices = api.setup_choices("digits", recipe.paths)
    tabs = st.tabs([ui.SHIFT_NAMES[s].capitalize() for s in choices["shifts"]])
    for shift, tab in zip(choices["shifts"], tabs):
        with tab:
            st.write(SHIFT_STORIES[shift])
            corruption, severity = None, 5
            if shift == "input":
                left, right = st.columns(2)
                corruption = left.selectbox("Corruption", choices["corruptions"], key="landing.corruption",
                                            index=choices["corruptions"].index("gaussian_noise"))
                severity = right.select_slider("Severity", [1, 2, 3, 4, 5], value=5, key="landing.severity")
            with ui.guard("Loading the sample images"):
                s = _samples(api.Task("digits", shift, corruption, severity), recipe.paths)
                _image_row("Source: what the pretrained model learnt", s["source"], s["source_labels"])
                _image_row("Target: the shifted task to fine-tune on", s["target"], s["target_labels"])


def _setups_section(recipe: api.Recipe) -> None:
    """Which setups can run on this machine, and for the others what is missing and where to get it."""
    rows = ui.setups(recipe.paths)
    table = [{k: r[k] for k in ("setup", "ready", "shifts", "description")} for r in rows]
    st.dataframe(table, hide_index=True, column_config={"ready": st.column_config.CheckboxColumn("files found")})
    for row in rows:
        if row["missing"]:
            with st.expander(f"How to get **{row['setup']}**"):
                st.markdown("\n".join(f"- {line}" for line in row["missing"]))
                st.caption("Set the folders in the sidebar (Real-setup paths) or with the AUTOFT_* "
                           "environment variables.")


def landing() -> None:
    """What automatic fine-tuning is, the three shifts on sample images, setups and device."""
    ui.frame("Overview")
    recipe, _ = ui.recipe()
    st.title("AutoFT Explorer")
    st.markdown(
        "A network pretrained on a **source** distribution meets a **shifted target** with few labels. "
        "Fine-tuning every layer at the same learning rate can destroy what still transfers; training only "
        "the head can miss what changed. **Automatic fine-tuning** chooses a learning-rate multiplier "
        "α<sub>l</sub> for every layer l (its learning rate is α<sub>l</sub> × lr; 0 freezes it) from the data: "
        "Auto-RGN from gradient-to-weight norm ratios, Module Criticality from how much the loss depends on "
        "each layer, surgical fine-tuning by cross-validating blocks, and more.", unsafe_allow_html=True)
    cols = st.columns(len(ui.NAVIGATION) - 1)
    for col, (path, label, icon) in zip(cols, ui.NAVIGATION[1:]):
        col.page_link(path, label=label, icon=icon)
    st.subheader("Three kinds of shift")
    _shift_tabs(recipe)
    st.subheader("Setups on this machine")
    _setups_section(recipe)
    st.subheader("Device")
    st.write(f"Runs use **{ui.device_summary()}** (change it in the sidebar).")


with ui.guard("Drawing the overview"):
    landing()
