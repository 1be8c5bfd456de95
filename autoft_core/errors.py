"""User-facing errors: each names the problem and the fix, so the CLI and dashboard never show a traceback."""
from __future__ import annotations

from pathlib import Path


class AutoFTError(Exception):
    """Base class for errors whose message is meant for the user as it stands."""


class BadArgumentError(AutoFTError, ValueError):
    """An argument (setup, shift, method, number...) is not one of the valid choices."""

    def __init__(self, what: str, value: object, valid: object) -> None:
        if isinstance(valid, (list, tuple, set, frozenset)):
            valid = ", ".join(str(v) for v in valid)
        super().__init__(f"unknown or invalid {what} {value!r}; valid: {valid}")


class MissingFileError(AutoFTError, FileNotFoundError):
    """A real dataset or checkpoint file is not on disk; says where it was looked for and where to get it."""

    def __init__(self, what: str, path: Path | str, where_to_get: str) -> None:
        self.path = Path(path)
        super().__init__(f"{what} not found at {self.path}. {where_to_get}")
