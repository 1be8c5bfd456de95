"""Widgets whose values survive page switches, and one widget for a bounded value (a Recipe setting or a
method hyper-parameter) drawn from its `Bounds`: choices as a select box, booleans as a checkbox, numbers as
a number input limited to the valid range.

A widget's value is kept under its key + ".kept" (plain session state, which Streamlit never clears) and
given back as the widget's starting value, so it returns on every page that draws the same key.
"""
from __future__ import annotations

from typing import Any

import streamlit as st

from autoft_core.core.values import Bounds

PERSIST: dict[str, Any] = {"persist_state": "session"}  # for widgets whose value is their own (no `value=`)


def kept(key: str, default: Any) -> Any:
    """The kept value of the widget `key` (its `default` until the user changes it)."""
    return st.session_state.setdefault(f"{key}.kept", default)


def _keep(key: str) -> None:
    st.session_state[f"{key}.kept"] = st.session_state[key]


def set_kept(key: str, value: Any) -> None:
    """Give the widget `key` a new value (from a callback or before the widget is drawn)."""
    st.session_state[f"{key}.kept"] = value
    st.session_state.pop(key, None)  # drawn afresh from the kept value


def keeping(key: str) -> dict[str, Any]:
    """The keyword arguments that make a widget keep its value under `key`."""
    return {"key": key, "on_change": _keep, "args": (key,)}


def _bound(kind: type, value: float | None) -> Any:
    return None if value is None else kind(value)


def bounded(label: str, help_text: str, bounds: Bounds, key: str, default: Any, maximum: float | None = None) -> Any:
    """Draw the widget (it starts at `default`, then keeps the user's value); return its value."""
    top = bounds.maximum if maximum is None else maximum
    value = kept(key, default)
    if top is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and value > top:
        set_kept(key, type(value)(top))  # e.g. shots beyond a smaller target pool
        value = type(value)(top)
    common = {**keeping(key), "help": f"{help_text}. Valid: {bounds.describe()}."}
    if bounds.choices is not None:
        options = list(bounds.choices)
        return st.selectbox(label, options, index=options.index(value) if value in options else 0, **common)
    if bounds.kind is bool:
        return st.checkbox(label, value=bool(value), **common)
    if bounds.kind is int:
        return st.number_input(label, min_value=_bound(int, bounds.minimum), max_value=_bound(int, top), step=1,
                               value=int(value), **common)
    if bounds.kind is float:
        return st.number_input(label, min_value=_bound(float, bounds.minimum), max_value=_bound(float, top),
                               format="%g", step=abs(value) / 10 if value else 0.01, value=float(value), **common)
    return st.text_input(label, value=str(value), **common)
