"""User-facing errors: each names the problem and the fix, so the CLI and dashboard never show a traceback."""
from __future__ import annotations

from pathlib import Path


class AutoFTError(Exception):
    """Base class for errors whose message is meant for the user as it stands."""

    exit_code = 2  # the command line's exit status for this error


class BadArgumentError(AutoFTError, ValueError):
    """An argument (setup, shift, method, number...) is not one of the valid choices."""

    def __init__(self, what: str, value: object, valid: object) -> None:
        if isinstance(valid, (list, tuple, set, frozenset)):
            valid = ", ".join(str(v) for v in valid)
        super().__init__(f"unknown or invalid {what} {value!r}; valid: {valid}")


class BadNumberError(BadArgumentError):
    """A number is not finite, not whole where it must be, or out of its range."""

    def __init__(self, what: str, value: object, valid: str) -> None:
        AutoFTError.__init__(self, f"{what} {value!r} is not {valid}")


class MissingFileError(AutoFTError, FileNotFoundError):
    """A real dataset or checkpoint file is not on disk; says where it was looked for and where to get it."""

    def __init__(self, what: str, path: Path | str, where_to_get: str) -> None:
        self.path = Path(path)
        super().__init__(f"{what} not found at {self.path}. {where_to_get}")


class StoreError(AutoFTError):
    """The result store cannot be read or written; says which file and what to do about it."""


class NonFiniteError(AutoFTError):
    """A loss, gradient or score became infinite or NaN (during fine-tuning: the run diverged)."""


class RunDiverged(AutoFTError):
    """A finished run whose training diverged: stored with status "diverged"; the CLI exits with EXIT_DIVERGED."""

    exit_code = 3
