"""AutoFT Explorer's engine: setups and shifts, per-layer weighting methods, fine-tuning, result store.

No Streamlit here: the dashboard (app.py, pages/, ui/) and the command line (`python -m autoft_core`)
call it. The public API (`load_task`, `pretrained_model`, `layer_partition`, `compute_weights`, `run`)
lives in `autoft_core.api` and is importable from here, with the types your own setups use
(`Split`, `TaskData`, `TaskSpec`, `Recipe`, `CustomSetup`, `folder_setup`); importing the package
itself stays light.
"""
from __future__ import annotations

import importlib
from typing import Any

from .cpu_isa import cap_cpu_isa

cap_cpu_isa()  # before any torch kernel runs: the same kernels on every x86-64 CPU (cpu_isa.py)

_TYPES = {"Split": "core.data", "TaskData": "core.data", "TaskSpec": "core.recipe", "Recipe": "core.recipe",
          "CustomSetup": "setups.python_entry", "folder_setup": "setups.folder"}
__all__ = ["compute_weights", "layer_partition", "load_task", "pretrained_model", "run", *_TYPES]


def __getattr__(name: str) -> Any:
    if name in _TYPES:
        return getattr(importlib.import_module(f"{__name__}.{_TYPES[name]}"), name)
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
