"""What to run: the task picker (setup, shift, corruption and severity) and the method picker (registered
methods, each hyper-parameter a widget bounded as the method declares it)."""
from __future__ import annotations

from typing import Any

import streamlit as st

from autoft_core.core.recipe import SEVERITIES

from . import engine, sidebar
from .widgets import PERSIST, bounded


@st.cache_data(show_spinner=False, ttl=60)
def setups(paths: Any) -> list[dict[str, Any]]:
    """Every setup with its readiness (cached a minute: `missing()` looks at the disk)."""
    return engine.setups_overview(paths)


@st.cache_data(show_spinner="Counting the target examples…")
def pool_counts(task: engine.Task, seeds: tuple[int, ...], paths: Any) -> list[list[int]]:
    """Per seed, the target pool's examples per class (cached: it builds the tasks)."""
    return engine.pool_counts(task, seeds, paths)


def setup_choice(paths: Any) -> str:
    """The setup select box; stops the page (after the sidebar) when the setup's files are missing."""
    ready = {row["setup"]: row for row in setups(paths)}
    name = st.selectbox("Setup", list(ready), key="task.setup", **PERSIST,
                        format_func=lambda n: n if ready[n]["ready"] else f"{n} (files missing)")
    if not ready[name]["ready"]:
        st.error(f"Setup **{name}** cannot run here: " + " ".join(ready[name]["missing"]))
        sidebar.settings(name)
        st.stop()
    return name


def corruption_choice(setup: str, key: str = "task") -> tuple[str, int]:
    """Corruption and severity select boxes of an input-level shift."""
    left, right = st.columns(2)
    corruption = left.selectbox("Corruption", list(engine.setup(setup).corruptions()), key=f"{key}.corruption.{setup}",
                                **PERSIST)
    severity = right.select_slider("Severity", list(SEVERITIES), value=SEVERITIES[-1], key=f"{key}.severity",
                                   **PERSIST)
    return corruption, severity


def task() -> engine.Task:
    """Setup, shift and (input-level) corruption and severity; stops the page if the setup cannot run."""
    left, right = st.columns(2)
    with left:
        setup = setup_choice(sidebar.paths())
    shifts = list(engine.setup(setup).shifts)
    shift = right.selectbox("Shift", shifts, key=f"task.shift.{setup}", **PERSIST,
                            index=shifts.index("output") if "output" in shifts else 0,
                            format_func=lambda s: engine.SHIFT_NAMES.get(s, s))
    if shift != "input":
        return engine.Task(setup, shift)
    return engine.Task(setup, shift, *corruption_choice(setup))


def settings_for(task_: engine.Task) -> tuple[engine.Settings, list[str]]:
    """The sidebar for the task's setup, the shots bounded by the task's target pool."""
    seeds = tuple(st.session_state.get("settings.seeds", [0])) or (0,)
    return sidebar.settings(task_.setup, pool_counts(task_, seeds, sidebar.paths()))


def methods() -> dict[str, dict[str, Any]]:
    """The chosen methods with their non-default hyper-parameters; stops the page if none is chosen."""
    names = engine.method_names()
    chosen = st.multiselect("Methods", names, default=engine.default_methods(names), key="task.methods",
                            **PERSIST, help="Every registered weighting method; new ones appear here automatically.")
    if not chosen:
        st.info("Pick at least one method.")
        st.stop()
    params: dict[str, dict[str, Any]] = {}
    with st.expander("Methods and hyper-parameters"):
        for name in chosen:
            cls = engine.method_class(name)
            st.markdown(f"**{name}**: {cls.summary}")
            cols = st.columns(3)
            values = {}
            for i, (param, spec) in enumerate(cls.params.items()):
                with cols[i % 3]:
                    values[param] = bounded(param, spec.help, spec.bounds, f"param.{name}.{param}", spec.default)
            params[name] = engine.non_default_params(name, values)
    return params


def classes(task_: engine.Task, paths: Any) -> int:
    """The number of classes of the task's target (the chance level is 1 / classes)."""
    return len(pool_counts(task_, (0,), paths)[0])
