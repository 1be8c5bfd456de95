"""Overview: what automatic fine-tuning is, the three shifts on the same images (clean against shifted,
original against flipped label), what each shift should do with the measured numbers, setups, device."""
from __future__ import annotations

from typing import Any

import streamlit as st

from autoft_core.core.recipe import DEFAULT_SEVERITY
from autoft_core.experiments.tables import table1
from autoft_core.shift_sizes import shift_sizes
from ui import engine, frames, layout, notes, output, pickers, sidebar
from ui.export import Meta

HOW = """
- **Three kinds of shift**: each tab shows the *same* target images twice: clean and corrupted (input-level),
  or with their original and their flipped label (output-level); the feature-level tab shows source and
  target images that share a label but are different subclasses.
- Under each story, **measured** numbers come from the result store (runs of the setup's default recipe);
  the Results page runs the whole table.
- **How large each shift is**: the source model's zero-shot accuracy on every target against the clean target
  (one click; it corrupts and classifies each target set, under a minute the first time).
- **Setups**: which can run here, and what is missing for the others.
"""
INTRO = (
    "A network pretrained on a **source** distribution meets a **shifted target** with few labels. Fine-tuning "
    "every layer at the same learning rate can destroy what still transfers; training only the head can miss "
    "what changed. **Automatic fine-tuning** chooses a learning-rate multiplier α<sub>l</sub> for every layer l "
    "(its learning rate is α<sub>l</sub> × lr; 0 freezes it) from the data: Auto-RGN from gradient-to-weight norm "
    "ratios, Module Criticality from how much the loss depends on each layer, surgical fine-tuning by "
    "cross-validating blocks, and more.")
SETUP = "digits"


@st.cache_data(show_spinner="Loading sample images…")
def samples(task: engine.Task, paths: Any) -> list[tuple[str, list, list[int]]]:
    return engine.shift_samples(task, paths, n=8)


def measured_note(shift: str, recipe: dict[str, Any], corruptions: list[str]) -> str | None:
    """The store's Table 1 cell for this shift of the digits setup, default recipe, current code."""
    frame = output.stored_runs()
    if frame.empty:
        return None
    return notes.measured(table1(frame, engine.selection(SETUP, recipe, 5, corruptions)), shift)


def shift_tab(shift: str, recipe: dict[str, Any], paths: Any) -> None:
    st.write(notes.SHIFT_STORIES[shift])
    corruptions = list(engine.setup(SETUP).corruptions())
    if note := measured_note(shift, recipe, corruptions):
        st.caption(note + " Runs of the setup's default recipe; run more on the Results page.")
    corruption, severity = None, 5
    if shift == "input":
        corruption, severity = pickers.corruption_choice(SETUP, key="overview")
    with layout.guard("Loading the sample images"):
        for caption, images, labels in samples(engine.Task(SETUP, shift, corruption, severity), paths):
            st.caption(caption)
            st.image(images, caption=[f"label {y}" for y in labels], width=72)


@st.cache_data(show_spinner=False)
def measured_shift_sizes(seed: int, _paths: Any) -> dict[str, Any]:
    return shift_sizes(SETUP, DEFAULT_SEVERITY, seed, _paths)


def shift_sizes_section(seed: int, paths: Any) -> None:
    """The source model's zero-shot accuracy per target beside the clean target's (the `shifts` command)."""
    st.caption(f"The {SETUP} source model on each target's test split (seed {seed}, corruptions at severity "
               f"{DEFAULT_SEVERITY}) against the clean target: how much each shift hurts before any fine-tuning. "
               f"`python -m autoft_core shifts --setup {SETUP}` prints the same.")
    if not (st.button("Measure the shifts", key="overview.shifts") or st.session_state.get("overview.measured")):
        return
    st.session_state["overview.measured"] = True
    sizes = None
    with layout.guard("Measuring the shifts"), st.status("Corrupting the target sets and classifying them…") as box:
        sizes = measured_shift_sizes(seed, paths)
        box.update(label="Shift sizes measured", state="complete")
    if sizes is not None:
        clean = sizes["clean_acc"]
        st.write(f"Clean target: **{100 * clean:.1f}%**" if clean is not None else "No clean target (no label flip).")
        output.show_table(frames.shift_size_frame(sizes), Meta("Shift sizes", SETUP, severity=DEFAULT_SEVERITY,
                                                               seeds=(seed,)), key="shift-sizes")


def setups_section(paths: Any) -> None:
    """Which setups can run on this machine, and for the others what is missing and where to get it."""
    rows = pickers.setups(paths)
    table = [{k: r[k] for k in ("setup", "ready", "shifts", "description")} for r in rows]
    st.dataframe(table, hide_index=True, column_config={"ready": st.column_config.CheckboxColumn("files found")})
    for row in rows:
        if row["missing"]:
            with st.expander(f"How to get **{row['setup']}**"):
                st.markdown("\n".join(f"- {line}" for line in row["missing"]))
                st.caption("Set the folders in the sidebar (Real-setup paths) or with the AUTOFT_* environment "
                           "variables.")


with layout.page("AutoFT Explorer", HOW):
    settings, _ = sidebar.settings(SETUP)
    st.markdown(INTRO, unsafe_allow_html=True)
    for col, (path, title, icon) in zip(st.columns(len(layout.PAGES) - 1), layout.PAGES[1:]):
        col.page_link(path, label=title, icon=icon)  # the columns wrap in order on narrow windows
    st.subheader("Three kinds of shift")
    shifts = list(engine.setup(SETUP).shifts)
    default = engine.setup(SETUP).recipe.to_dict()
    for shift, tab in zip(shifts, st.tabs([engine.SHIFT_NAMES[s].capitalize() for s in shifts])):
        with tab:
            shift_tab(shift, default, settings.paths)
    st.subheader("How large each shift is")
    shift_sizes_section(settings.seeds[0], settings.paths)
    st.subheader("Setups on this machine")
    setups_section(settings.paths)
    st.subheader("Device")
    st.write(f"Runs use **{sidebar.device_summary()}** (change it in the sidebar).")
