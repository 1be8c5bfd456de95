"""The registry of weighting methods: every module in this package that defines a `Method` subclass
with a `name` is picked up, so a new method is one new file.

Listing methods and resolving their hyper-parameters (`method_names`, `method_info`, `resolve_params`)
reads the method catalogue (method_catalogue.py) and needs no torch; `get_method` and `method_class`
import the methods themselves. `Method`, `MethodContext`, `LayerWeights` and `Param` (methods/base.py,
which imports torch) load on first access.
"""
from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..errors import BadArgumentError
from ..method_catalogue import MethodInfo, from_classes, load_or_build

if TYPE_CHECKING:
    from .base import LayerWeights, Method, MethodContext, Param

_REGISTRY: dict[str, type[Method]] = {}
_BASE_NAMES = ("LayerWeights", "Method", "MethodContext", "Param")


def registry() -> dict[str, type[Method]]:
    """Every registered method class by name (imports all method modules on first use)."""
    if not _REGISTRY:
        from .base import Method

        for info in pkgutil.iter_modules(__path__):
            if info.name != "base" and not info.name.startswith("_"):
                importlib.import_module(f"{__name__}.{info.name}")
        for cls in _all_subclasses(Method):
            if getattr(cls, "name", None):
                _REGISTRY[cls.name] = cls
    return _REGISTRY


def _all_subclasses(cls: type) -> list[type]:
    return [s for c in cls.__subclasses__() for s in (c, *_all_subclasses(c))]


@lru_cache(maxsize=1)
def catalogue() -> dict[str, MethodInfo]:
    """Every method's declaration, in listing order, from the catalogue file (rebuilt when stale)."""
    return load_or_build(lambda: from_classes(registry()))


def method_info(name: str) -> MethodInfo:
    """The declaration of the method called `name` (torch-free); unknown names list the valid ones."""
    methods = catalogue()
    if name not in methods:
        raise BadArgumentError("method", name, list(methods))
    return methods[name]


def method_names() -> list[str]:
    """Registered method names, in display order (`Method.order`, then by name); torch-free."""
    return list(catalogue())


def resolve_params(name: str, given: dict[str, object] | None) -> dict[str, Any]:
    """The method's hyper-parameters: defaults overlaid with `given`, each checked; torch-free."""
    return method_info(name).resolve_params(given)


def method_class(name: str) -> type[Method]:
    """The class of the method called `name`; unknown names list the valid ones."""
    method_info(name)
    return registry()[name]


def get_method(name: str) -> Method:
    """A fresh instance of the method called `name`; unknown names list the valid ones."""
    return method_class(name)()


def __getattr__(name: str) -> Any:
    if name in _BASE_NAMES:
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LayerWeights", "Method", "MethodContext", "MethodInfo", "Param", "get_method", "method_class",
           "method_info", "method_names", "resolve_params"]
