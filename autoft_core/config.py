"""A run's full description and its store keys; deliberately free of torch so that a cache hit
on the command line answers without importing the deep-learning stack."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

ENGINE_ROOT = Path(__file__).resolve().parent
# Code that orchestrates, stores or displays runs without changing their numbers.
NOT_NUMERIC = ("__main__.py", "cli.py", "dashboard_api.py", "store.py", "shift_sizes.py", "experiments/")


@lru_cache(maxsize=1)
def code_version() -> str:
    """A hash of the engine's source files that compute results: numbers from other code are never reused."""
    digest = hashlib.sha256()
    for path in sorted(ENGINE_ROOT.rglob("*.py")):
        if path.relative_to(ENGINE_ROOT).as_posix().startswith(NOT_NUMERIC):
            continue
        digest.update(path.relative_to(ENGINE_ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers. None means "the setup's / method's default"."""

    setup: str = "digits"
    shift: str = "output"
    corruption: str | None = None
    severity: int = 5
    method: str = "full"
    params: dict[str, Any] = field(default_factory=dict)
    granularity: str = "module"
    shots: int | None = None
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    optimizer: str = "adam"
    weight_decay: float = 0.0
    train_bn_stats: bool = False
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "code_version": code_version()}

    def key(self) -> str:
        """A hash of this config (as given, or resolved) and the code version."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:24]
