"""The registry of weighting methods: every module in this package that defines a `Method` subclass
with a `name` is picked up, so a new method is one new file."""
from __future__ import annotations

import importlib
import pkgutil

from ..errors import BadArgumentError
from .base import LayerWeights, Method, MethodContext, Param

_REGISTRY: dict[str, type[Method]] = {}


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    for cls in _all_subclasses(Method):
        if getattr(cls, "name", None):
            _REGISTRY[cls.name] = cls


def _all_subclasses(cls: type) -> list[type]:
    return [s for c in cls.__subclasses__() for s in (c, *_all_subclasses(c))]


def method_names() -> list[str]:
    """Registered method names, in display order (`Method.order`, then by name)."""
    if not _REGISTRY:
        _discover()
    return sorted(_REGISTRY, key=lambda n: (_REGISTRY[n].order, n))


def get_method(name: str) -> Method:
    """A fresh instance of the method called `name`; unknown names list the valid ones."""
    if name not in method_names():
        raise BadArgumentError("method", name, method_names())
    return _REGISTRY[name]()


def method_class(name: str) -> type[Method]:
    get_method(name)
    return _REGISTRY[name]


__all__ = ["LayerWeights", "Method", "MethodContext", "Param", "get_method", "method_class", "method_names"]
