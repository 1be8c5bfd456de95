"""Parsing and bounds-checking of user-given values (CLI strings, dashboard widgets, Python calls).

One function serves method hyper-parameters and recipe fields alike, so every number is checked the same
way: the right type, finite, within its bounds or among its choices, before any data or model loads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import BadArgumentError, BadNumberError

ALL = "all"
_KIND_WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def cli_flag(name: str) -> str:
    """A setting's command-line flag, `--source-dir` for source_dir: the CLI, its error messages and the
    dashboard's command lines spell it alike."""
    return "--" + name.replace("_", "-")


def _number(value: float) -> str:
    """2147483647 and 1000000 in full, 0.001 as 0.001, 1e-12 as 1e-12."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e16 else f"{value:g}"


@dataclass(frozen=True)
class Bounds:
    """What a value may be: its type, an inclusive range and/or a set of choices; `all_means` maps "all"."""

    kind: type
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple | None = None
    all_means: Any = None  # the value "all" stands for (count-like parameters), None: "all" not accepted

    def describe(self) -> str:
        """Plain words for the valid values, e.g. 'a whole number from 0 to 100, or all'."""
        if self.choices is not None:
            return ", ".join(str(c) for c in self.choices)
        text = _KIND_WORDS.get(self.kind, self.kind.__name__)
        if self.minimum is not None and self.maximum is not None:
            text += f" from {_number(self.minimum)} to {_number(self.maximum)}"
        elif self.minimum is not None:
            text += f" >= {_number(self.minimum)}"
        elif self.maximum is not None:
            text += f" <= {_number(self.maximum)}"
        return text + (f", or {ALL}" if self.all_means is not None else "")

    def parse(self, name: str, raw: object) -> Any:
        """`raw` converted to `kind` and checked; BadArgumentError (naming `name` and the valid values) if not."""
        if self.choices is not None:
            value = self._convert_or_none(raw)
            if value is None or value not in self.choices:
                raise BadArgumentError(name, raw, self.describe())
            return value
        value = self._convert_or_none(raw)
        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and
                             value != self.all_means and not self._in_range(value)):
            raise BadNumberError(name, raw, self.describe()) if self.kind in (int, float) else \
                BadArgumentError(name, raw, self.describe())
        return value

    def _in_range(self, value: float) -> bool:
        return math.isfinite(value) and (self.minimum is None or value >= self.minimum) and (
            self.maximum is None or value <= self.maximum)

    def _convert_or_none(self, raw: object) -> Any:
        try:
            return self._convert(raw)
        except (TypeError, ValueError, OverflowError):
            return None

    def _convert(self, raw: object) -> Any:
        if isinstance(raw, str):
            raw = raw.strip()
            if raw.lower() == ALL and self.all_means is not None:
                return self.all_means
        if self.kind is bool:
            if isinstance(raw, str) and raw.lower() in _TRUE + _FALSE:
                return raw.lower() in _TRUE
            if isinstance(raw, (bool, int)) and raw in (0, 1):
                return bool(raw)
            raise ValueError(raw)
        if self.kind is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError(raw)
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw) if not isinstance(raw, str) else int(raw, 10)
        if self.kind is float:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return float(raw)
        return self.kind(raw)
