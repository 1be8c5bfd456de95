"""The one place where RobustBench 1.1.1 is made importable.

RobustBench as published imports a top-level module `autoattack`, but its dependency installs that
code as `pyautoattack`; and its `loaders` module imports `pkg_resources`, which setuptools >= 81 no
longer ships (requirements.txt pins setuptools < 81). `import_robustbench()` aliases the module and
checks for pkg_resources, so every caller gets either RobustBench or one clear error.
"""
from __future__ import annotations

import importlib
import sys
from types import ModuleType

from .errors import AutoFTError


def _alias_autoattack() -> None:
    """Make `import autoattack` (and its submodules) resolve to the installed `pyautoattack`."""
    if "autoattack" in sys.modules:
        return
    try:
        importlib.import_module("autoattack")
        return
    except ImportError:
        pass
    package = importlib.import_module("pyautoattack")
    sys.modules["autoattack"] = package
    for sub in ("autoattack", "state", "autopgd_base", "fab_pt", "square", "checks", "other_utils"):
        try:
            sys.modules[f"autoattack.{sub}"] = importlib.import_module(f"pyautoattack.{sub}")
        except ImportError:  # optional attack modules that need extra packages (tensorflow)
            continue


def import_robustbench() -> ModuleType:
    """Import robustbench (utils and data included), fixing the two packaging problems above."""
    try:
        import pkg_resources  # noqa: F401  (robustbench.loaders needs it)
    except ImportError as exc:
        raise AutoFTError("robustbench needs pkg_resources: run `pip install 'setuptools<81'`") from exc
    try:
        _alias_autoattack()
    except ImportError as exc:
        raise AutoFTError("robustbench needs pyautoattack: run `pip install -r requirements.txt`") from exc
    try:
        module = importlib.import_module("robustbench")
        importlib.import_module("robustbench.data")
        importlib.import_module("robustbench.utils")
    except ImportError as exc:
        raise AutoFTError(f"robustbench failed to import ({exc}): run `pip install -r requirements.txt`") from exc
    return module
