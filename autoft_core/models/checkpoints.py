"""Why a checkpoint could not be read, in plain words (never torch's advice to unpickle unsafely).

The loaders read checkpoints with torch's weights-only loader; anything it raises on a file that is
garbage, truncated, a bare tensor or a dict of the wrong layout is one of CHECKPOINT_ERRORS.
"""
from __future__ import annotations

import pickle

CHECKPOINT_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, KeyError, IndexError, TypeError,
                     AttributeError, ValueError)


def checkpoint_problem(exc: BaseException) -> str:
    """What is wrong with the file, from the exception the loader raised on it."""
    if isinstance(exc, pickle.UnpicklingError):
        return ("it is not a torch checkpoint, or it holds Python objects other than tensors, which the safe "
                "(weights-only) loader refuses to unpickle")
    if isinstance(exc, EOFError):
        return "it is empty or cut short"
    if isinstance(exc, RuntimeError) and "state_dict" in str(exc):
        return "its tensors do not fit the model (another architecture, or other shapes)"
    if isinstance(exc, (RuntimeError, OSError)):
        return "it is not a torch checkpoint file, or it is cut short"
    return "it does not hold a state_dict of named tensors where one is expected"
