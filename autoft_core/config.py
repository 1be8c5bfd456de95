"""A run's full description and its store keys; deliberately free of torch so that a cache hit
on the command line answers without importing the deep-learning stack."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .core.recipe import DEFAULT_SEED, DEFAULT_SEVERITY, SEED_BOUNDS, Recipe, TaskSpec, field_names
from .core.values import Bounds
from .cpu_isa import kernel_tag

ENGINE_ROOT = Path(__file__).resolve().parent
# Code that orchestrates, stores or displays runs without changing their numbers.
NOT_NUMERIC = ("__main__.py", "api.py", "cli.py", "cli_args.py", "export.py", "runs.py", "shift_sizes.py", "store.py", "experiments/")


@lru_cache(maxsize=1)
def code_version() -> str:
    """A hash of the engine's source files that compute results, and of the CPU kernels' tag where they are
    not the capped x86-64 ones (cpu_isa.py): numbers from other code or other kernels are never reused."""
    digest = hashlib.sha256()
    for path in sorted(ENGINE_ROOT.rglob("*.py")):
        if path.relative_to(ENGINE_ROOT).as_posix().startswith(NOT_NUMERIC):
            continue
        digest.update(path.relative_to(ENGINE_ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    tag = kernel_tag()
    if tag:
        digest.update(f"cpu kernels: {tag}".encode())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers: the task, the method and its parameters, the recipe
    (None: the setup's) and the seed. A resolved config has every default filled in."""

    setup: str = "digits"
    shift: str = "output"
    corruption: str | None = None
    severity: int = DEFAULT_SEVERITY
    method: str = "full"
    params: dict[str, Any] = field(default_factory=dict)
    recipe: Recipe | None = None
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        """Seed and severity in range before they can reach a run or the store (the recipe checks itself)."""
        object.__setattr__(self, "seed", SEED_BOUNDS.parse("seed", self.seed))
        object.__setattr__(self, "severity", Bounds(int, 0, 5).parse("severity", self.severity))

    def task_spec(self) -> TaskSpec:
        """The target task this run fine-tunes on (needs a recipe: the shots are part of the task)."""
        shots = self.recipe.shots if self.recipe is not None else TaskSpec.shots
        return TaskSpec(self.shift, self.corruption, self.severity, shots, self.seed)

    def to_dict(self) -> dict[str, Any]:
        """Flat fields (the recipe's settings beside the task's; None when not given) and the code version."""
        recipe = self.recipe.to_dict() if self.recipe is not None else dict.fromkeys(field_names())
        return {"setup": self.setup, "shift": self.shift, "corruption": self.corruption, "severity": self.severity,
                "method": self.method, "params": dict(self.params), **recipe, "seed": self.seed,
                "code_version": code_version()}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> "RunConfig":
        """The config of a stored row (the inverse of `to_dict`)."""
        given = {k: row[k] for k in field_names() if row.get(k) is not None}
        recipe = Recipe(**given) if given else None
        return cls(row["setup"], row["shift"], row.get("corruption"), int(row["severity"]), row["method"],
                   dict(row.get("params") or {}), recipe, int(row["seed"]))

    def key(self) -> str:
        """A hash of this config (as given, or resolved) and the code version."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:24]
