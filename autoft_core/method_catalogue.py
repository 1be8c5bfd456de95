"""The methods' names, summaries and hyper-parameters without importing them (they import torch, about
1-2 s): what `methods`, `sweep`, `table` and request resolution need.

The catalogue is a JSON file in the cache folder, generated from the registered `Method` classes and
tagged with a hash of the methods' source files (and of this file). When the tag does not match the
source on disk, the catalogue is rebuilt from the classes (importing them) and rewritten, so it can
lag behind the code by no run. tests/test_method_catalogue.py checks it against the registry.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .core.values import Bounds
from .errors import BadArgumentError
from .paths import cache_dir

METHODS_DIR = Path(__file__).resolve().parent / "methods"
FILE_NAME = "method_catalogue.json"


@dataclass(frozen=True)
class Param:
    """A method hyper-parameter: default, help, bounds (choices or an inclusive range) and the values its
    hyper-parameter grid tries (`grid`, empty: not a grid axis). Count-like parameters accept "all" (0).
    Methods declare theirs with it (`methods.base` re-exports it); the catalogue stores the same."""

    default: Any
    help: str
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    grid: tuple = ()
    all_means: Any = None  # the value "all" stands for (count-like parameters: 0)

    @property
    def bounds(self) -> Bounds:
        """The parser and range check of this parameter's values."""
        return Bounds(type(self.default), self.minimum, self.maximum, self.choices, self.all_means)

    def parse(self, name: str, raw: object) -> Any:
        """Convert `raw` (often a CLI string) to this parameter's type and check its bounds, or raise
        BadArgumentError naming the valid values."""
        return self.bounds.parse(f"value for {name}", raw)


def resolve_given(method: str, params: dict[str, Param], given: dict[str, object] | None) -> dict[str, Any]:
    """A method's defaults overlaid with `given`, each parsed and bounds-checked; unknown keys rejected."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(params))
    if unknown:
        valid = ", ".join(f"{k} (default {p.default})" for k, p in params.items()) or "none"
        raise BadArgumentError(f"parameter for method {method}", unknown[0], valid)
    return {k: p.parse(k, given[k]) if k in given else p.default for k, p in params.items()}


def grid_of(params: dict[str, Param]) -> dict[str, tuple]:
    """The hyper-parameters declared as a grid, with the values a grid run tries."""
    return {k: p.grid for k, p in params.items() if p.grid}


@dataclass(frozen=True)
class MethodInfo:
    """What a method declares: name, one-line summary, listing order, whether its multipliers are one-hot,
    and its hyper-parameters."""

    name: str
    summary: str
    order: int
    one_hot: bool
    params: dict[str, Param] = field(default_factory=dict)

    def resolve_params(self, given: dict[str, object] | None) -> dict[str, Any]:
        """Defaults overlaid with `given`, each parsed (as `Method.resolve_params`); unknown keys rejected."""
        return resolve_given(self.name, self.params, given)

    def grid(self) -> dict[str, tuple]:
        """The hyper-parameters declared as a grid, with the values a grid run tries."""
        return grid_of(self.params)


def source_hash() -> str:
    """A hash of the methods' source files and of this module: the catalogue's validity tag."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for path in sorted(METHODS_DIR.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def from_classes(classes: dict[str, type]) -> dict[str, MethodInfo]:
    """The catalogue of the registered `Method` classes, in listing order (`order`, then name)."""
    ordered = sorted(classes, key=lambda n: (classes[n].order, n))
    return {n: MethodInfo(n, classes[n].summary, classes[n].order, classes[n].one_hot,
                          {k: Param(**{f: getattr(p, f) for f in Param.__dataclass_fields__})
                           for k, p in classes[n].params.items()}) for n in ordered}


def _to_json(methods: dict[str, MethodInfo], tag: str) -> str:
    return json.dumps({"source": tag, "methods": [asdict(m) for m in methods.values()]}, indent=1)


def _from_json(text: str) -> tuple[str, dict[str, MethodInfo]]:
    blob = json.loads(text)
    tuples = ("choices", "grid")
    methods = {m["name"]: MethodInfo(**{**m, "params": {
        k: Param(**{f: tuple(v) if f in tuples and v is not None else v for f, v in p.items()})
        for k, p in m["params"].items()}}) for m in blob["methods"]}
    return blob["source"], methods


def load_or_build(build: Callable[[], dict[str, MethodInfo]]) -> dict[str, MethodInfo]:
    """The catalogue from the cached file when its tag matches the source, else `build()` (from the classes),
    written back when it survives a JSON round trip unchanged (a value JSON cannot carry is never cached)."""
    tag, path = source_hash(), cache_dir() / FILE_NAME
    try:
        stored_tag, methods = _from_json(path.read_text())
        if stored_tag == tag:
            return methods
    except (OSError, ValueError, KeyError, TypeError):
        pass
    methods = build()
    text = _to_json(methods, tag)
    if _from_json(text)[1] == methods:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(text)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache: the classes answer every time
    return methods
