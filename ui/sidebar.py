"""The sidebar's shared settings: the fine-tuning recipe, generated from `Recipe`'s fields with the chosen
setup's defaults (the CLI's), seeds, device and real-setup paths. Values live in st.session_state per
setup, so every page shows the same ones."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from autoft_core.core.recipe import Recipe, field_info
from autoft_core.errors import AutoFTError

from . import engine
from .frames import effective_shots
from .widgets import PERSIST, bounded, kept, keeping, set_kept

SEEDS = list(range(10))
QUICK = {"epochs": 3}  # the "quick preview" preset: fewer epochs than the papers' recipe


def key(setup: str, name: str) -> str:
    """The session-state key of one recipe setting of one setup."""
    return f"recipe.{setup}.{name}"


@st.cache_resource(show_spinner="Starting the engine (importing PyTorch)…")
def device_summary() -> str:
    """What `auto` picks on this server (asked once per process)."""
    return engine.device_summary()


def paths() -> Any:
    """The real-setup paths as last entered (DataPaths; paths that do not exist are left out)."""
    raw = {name: kept(f"settings.path.{name}", value) for name, value in engine.env_paths().items()}
    return engine.path_problems(raw)[0]


def _set(setup: str, values: dict[str, Any]) -> None:
    for name, value in values.items():
        set_kept(key(setup, name), value)


def settings(setup: str, counts: Sequence[Sequence[int]] | None = None) -> tuple[engine.Settings, list[str]]:
    """Draw the shared settings for `setup` and return them with any reason they cannot run (empty: fine).

    `counts` (per seed, the examples per class of the target pool) bounds the shots at the whole pool and
    shows the effective number of training images."""
    side, defaults = st.sidebar, engine.setup(setup).recipe
    side.header("Settings")
    side.multiselect("Seeds", SEEDS, default=[0], key="settings.seeds", **PERSIST,
                     help="Each run is repeated per seed; tables show mean and std over seeds, charts a ± std band.")
    pool = max((len(c) * max(c) for c in counts or () if c), default=0)  # more shots draw the same images
    values: dict[str, Any] = {}
    with side.container(border=True):
        st.markdown(f"**Recipe** · {setup} defaults, as the CLI")
        for name, _, help_text, bounds in field_info():
            maximum = max(pool, defaults.shots) if name == "shots" and pool else None
            values[name] = bounded(name.replace("_", " "), help_text, bounds, key(setup, name),
                                   getattr(defaults, name), maximum)
            if name == "shots" and counts:
                used = min(effective_shots(values["shots"], c) for c in counts)
                low, high = min(min(c) for c in counts), max(max(c) for c in counts)
                st.caption(f"Effective: **{used}** training images ({values['shots'] // len(counts[0])} per class "
                           f"asked of {len(counts[0])} classes; the pool holds "
                           f"{low if low == high else f'{low}–{high}'} per class).")
        changed = {k: v for k, v in values.items() if v != getattr(defaults, k)}
        if changed:
            st.caption("Differs from the CLI defaults: " + ", ".join(
                f"{k} {v} (default {getattr(defaults, k)})" for k, v in changed.items()))
        left, right = st.columns(2)
        left.button("CLI defaults", key=f"recipe.{setup}.reset", on_click=_set, args=(setup, defaults.to_dict()),
                    help="The setup's default recipe: what the CLI and README use.", width="stretch")
        right.button("Quick preview", key=f"recipe.{setup}.quick", on_click=_set, args=(setup, QUICK),
                     help=f"A faster preset ({', '.join(f'{k} {v}' for k, v in QUICK.items())}): fine for a look, "
                          "not the papers' recipe.", width="stretch")
    side.selectbox("Device", ["auto", "cpu", "cuda"], key="settings.device", **PERSIST,
                   help=f"auto uses {device_summary()}")
    problems = []
    device = st.session_state["settings.device"]
    if problem := engine.device_problem(device):
        side.error(problem)
        problems.append(problem)
    with side.expander("Real-setup paths"):
        st.caption("Only the CIFAR-10 and BREEDS setups need files; the digits setup is embedded.")
        raw = {}
        for name, value in engine.env_paths().items():
            path_key = f"settings.path.{name}"
            raw[name] = st.text_input(engine.PATH_LABELS[name], value=kept(path_key, value), **keeping(path_key))
        data_paths, path_problems = engine.path_problems(raw)
        for problem in path_problems:
            st.error(problem)
    side.caption(f"Result store: `{engine.store_path()}`")
    seeds = tuple(sorted(st.session_state["settings.seeds"]))
    if not seeds:
        problems.append("No seed chosen: pick at least one in the sidebar.")
    try:
        recipe = Recipe(**values)
    except AutoFTError as exc:
        problems.append(str(exc))
        recipe = defaults
    return engine.Settings(recipe, seeds or (0,), device, data_paths), problems
