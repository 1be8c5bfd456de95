"""The registry of setups (data set + shifts + pretrained model), imported lazily by name."""
from __future__ import annotations

import importlib

from ..errors import BadArgumentError
from ..paths import DataPaths
from ..core.recipe import CORRUPTIONS, TaskSpec
from .base import Setup

_SETUPS = {
    "digits": ("digits", "DigitsSetup"),
    "cifar10": ("cifar10", "Cifar10Setup"),
    "breeds-living17": ("breeds", "Living17Setup"),
    "breeds-entity30": ("breeds", "Entity30Setup"),
}


def setup_names() -> list[str]:
    return list(_SETUPS)


def get_setup(name: str, paths: DataPaths | None = None) -> Setup:
    """The setup called `name`, reading real files from `paths` (default: AUTOFT_* variables)."""
    if name not in _SETUPS:
        raise BadArgumentError("setup", name, setup_names())
    module, cls = _SETUPS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)(paths)


__all__ = ["CORRUPTIONS", "Setup", "TaskSpec", "get_setup", "setup_names"]
