"""One widget for a bounded value (a Recipe setting or a method hyper-parameter), drawn from its `Bounds`:
choices as a select box, booleans as a checkbox, numbers as a number input limited to the valid range."""
from __future__ import annotations

from typing import Any

import streamlit as st

from autoft_core.core.values import Bounds

PERSIST: dict[str, Any] = {"persist_state": "session"}  # a widget keeps its value across page switches


def _bound(kind: type, value: float | None) -> Any:
    return None if value is None else kind(value)


def bounded(label: str, help_text: str, bounds: Bounds, state_key: str, default: Any,
            maximum: float | None = None) -> Any:
    """Draw the widget (its value starts at `default` and lives in st.session_state[state_key]); its value."""
    st.session_state.setdefault(state_key, default)
    common = {"key": state_key, "help": f"{help_text}. Valid: {bounds.describe()}.", **PERSIST}
    top = bounds.maximum if maximum is None else maximum
    if bounds.choices is not None:
        return st.selectbox(label, list(bounds.choices), **common)
    if bounds.kind is bool:
        return st.checkbox(label, **common)
    if bounds.kind is int:
        return st.number_input(label, min_value=_bound(int, bounds.minimum), max_value=_bound(int, top), step=1,
                               **common)
    if bounds.kind is float:
        value = st.session_state[state_key]
        return st.number_input(label, min_value=_bound(float, bounds.minimum), max_value=_bound(float, top),
                               format="%g", step=abs(value) / 10 if value else 0.01, **common)
    return st.text_input(label, **common)
