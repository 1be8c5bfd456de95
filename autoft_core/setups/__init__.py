"""The registry of setups (data set + shifts + pretrained model), imported lazily by name.

A setup name may carry options: `folder?source_dir=...&...` (setups.folder; `named_setup` builds it
from the CLI's flags) and `python:package.module:function` (setups.python_entry). Options in the name
keep runs of different folders, models or entry points apart in the result store.
"""
from __future__ import annotations

import importlib
from typing import Any

from ..errors import BadArgumentError
from ..paths import DataPaths
from ..core.recipe import CORRUPTIONS, TaskSpec
from ..core.values import cli_flag
from .base import Setup

_SETUPS = {
    "digits": ("digits", "DigitsSetup"),
    "cifar10": ("cifar10", "Cifar10Setup"),
    "breeds-living17": ("breeds", "Living17Setup"),
    "breeds-entity30": ("breeds", "Entity30Setup"),
    "digits-vit": ("digits_vit", "DigitsVitSetup"),
    "folder": ("folder", "FolderSetup"),
}
# --arch on a setup with more than one model: arch -> the setup that has it (the first is the default)
ARCH_VARIANTS = {"digits": {"resnet": "digits", "vit": "digits-vit"}}


def setup_names() -> list[str]:
    """The built-in setups' names (besides them, any `python:package.module:function`)."""
    return list(_SETUPS)


def overview(paths: DataPaths | None = None) -> list[dict[str, Any]]:
    """Each built-in setup: whether its files are all there, its description, shifts, default recipe and
    the messages of the files it misses (the CLI's `setups` and the dashboard's overview)."""
    rows = []
    for name in setup_names():
        setup = get_setup(name, paths)
        missing = setup.missing()
        rows.append({"setup": name, "ready": not missing, "description": setup.description,
                     "shifts": list(setup.shifts), "recipe": setup.recipe.to_dict(), "missing": missing})
    return rows


def get_setup(name: str, paths: DataPaths | None = None) -> Setup:
    """The setup called `name`, reading real files from `paths` (default: AUTOFT_* variables)."""
    if isinstance(name, str) and name.startswith("python:"):
        from .python_entry import PythonSetup

        return PythonSetup(name, paths)
    base, has_options, query = name.partition("?") if isinstance(name, str) else ("", "", "")
    if base not in _SETUPS:
        raise BadArgumentError("setup", name, [*setup_names(), "python:package.module:function"])
    module, cls_name = _SETUPS[base]
    cls = getattr(importlib.import_module(f"{__name__}.{module}"), cls_name)
    if not has_options:
        return cls(paths)
    if not hasattr(cls, "with_options"):
        raise BadArgumentError(f"options for setup {base}", query, "none")
    return cls.with_options(paths, query)


def named_setup(setup: str, arch: str | None = None, **folder: str | None) -> str:
    """The setup name the CLI's flags stand for: `--setup digits --arch vit` is digits-vit, and
    `--setup folder` with its options (setups.folder.OPTIONS) a `folder?...` name."""
    if setup == "folder":
        from .folder import folder_setup, require_options

        given = {k: v for k, v in folder.items() if v is not None}
        require_options(given)
        return folder_setup(**given, **({"arch": arch} if arch else {}))
    stray = [k for k, v in folder.items() if v is not None]
    if stray:
        raise BadArgumentError("option", cli_flag(stray[0]), "only with --setup folder")
    if arch is None:
        return setup
    variants = ARCH_VARIANTS.get(setup, {})
    if arch not in variants:
        raise BadArgumentError(f"arch for setup {setup}", arch,
                               list(variants) or "none (it has one model; --arch picks folder architectures)")
    return variants[arch]


__all__ = ["CORRUPTIONS", "Setup", "TaskSpec", "get_setup", "named_setup", "setup_names"]
