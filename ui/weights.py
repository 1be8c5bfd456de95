"""Layer weights computed on a page (no fine-tuning unless the method needs it): kept in this server's
memory, shared by every tab, and computed inside a status box that shows the method's notes while it works."""
from __future__ import annotations

import streamlit as st

from autoft_core.config import RunConfig
from autoft_core.experiment import compute_weights

from .engine import Settings


@st.cache_resource
def _memo() -> dict[tuple, dict]:
    """Layer weights already computed in this server process."""
    return {}


def weights(cfg: RunConfig, settings: Settings, label: str) -> dict:
    """One method's per-layer scores and multipliers for `cfg`: from memory, else computed now."""
    memo, key = _memo(), (cfg.key(), settings.device, settings.paths)
    if key not in memo:
        slot = st.empty()  # the status box goes once the weights are there
        with slot.status(f"Computing the {label} weights…") as box:
            memo[key] = compute_weights(cfg, settings.paths, settings.device,
                                        status=lambda note: box.update(label=f"{label}: {note}"))
        slot.empty()
    return memo[key]
