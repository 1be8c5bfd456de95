"""A run's full description and its store keys; deliberately free of torch so that a cache hit
on the command line answers without importing the deep-learning stack."""
from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .core.recipe import DEFAULT_SEED, DEFAULT_SEVERITY, SEED_BOUNDS, SEVERITY_BOUNDS, Recipe, TaskSpec, field_names
from .core.values import Bounds
from .cpu_isa import kernel_tag
from .errors import AutoFTError
from .paths import cache_dir, write_atomic

ENGINE_ROOT = Path(__file__).resolve().parent
# Code that orchestrates, stores or displays runs without changing their numbers.
NOT_NUMERIC = ("__main__.py", "api.py", "cli.py", "cli_args.py", "export.py", "runs.py", "shift_sizes.py", "store.py",
               "experiments/")
MEMO_NAME = "code_version.json"  # in the cache folder: the version of the last engine files seen


class _WithoutLoneStrings(ast.NodeTransformer):
    """Drops the statements that are a lone string (docstrings among them): they compute nothing."""

    def visit_Expr(self, node: ast.Expr) -> ast.Expr | None:
        return None if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str) else node


def code_digest(source: bytes) -> str:
    """A hash of what one Python file computes: its syntax tree without docstrings (comments, blank lines
    and line breaks never reach the tree), so editing prose or layout re-runs nothing."""
    tree = _WithoutLoneStrings().visit(ast.parse(source))
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


def _numeric_files() -> list[tuple[str, bytes]]:
    """(path relative to the engine, bytes) of every engine file that computes results, in a fixed order."""
    paths = sorted(ENGINE_ROOT.rglob("*.py"))
    named = [(path.relative_to(ENGINE_ROOT).as_posix(), path) for path in paths]
    return [(name, path.read_bytes()) for name, path in named if not name.startswith(NOT_NUMERIC)]


@lru_cache(maxsize=1)
def code_version() -> str:
    """A hash of the code (`code_digest`) of the engine files that compute results, and of the CPU and its
    kernels (`cpu_isa.kernel_tag`): numbers from other code or another CPU are never reused. Parsing the
    files takes about 0.1 s, so the version is remembered in the cache folder against the files' bytes:
    a cache hit on the command line still answers in milliseconds."""
    files, kernels = _numeric_files(), f"cpu kernels: {kernel_tag()}".encode()
    raw = hashlib.sha256(b"".join(name.encode() + b"\0" + text + b"\0" for name, text in files) + kernels).hexdigest()
    memo = cache_dir() / MEMO_NAME
    try:
        stored = json.loads(memo.read_text())
        if stored["files"] == raw:
            return stored["version"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = hashlib.sha256()
    for name, text in files:
        digest.update(f"{name}\0{code_digest(text)}\0".encode())
    digest.update(kernels)
    version = digest.hexdigest()[:12]
    try:
        write_atomic(memo, lambda tmp: tmp.write_text(json.dumps({"files": raw, "version": version})))
    except OSError:
        pass  # a read-only cache folder: every process parses the files
    return version


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
        """Seed and severity in range, and no corruption the shift would drop unseen, before they can reach a
        run or the store (the recipe checks itself); the CLI, the API, sweeps and the dashboard all build this."""
        if self.corruption is not None and self.shift != "input":
            raise AutoFTError(f"corruption applies to the input shift only, not {self.shift}: set the shift to input "
                              "(--shift input) or leave the corruption out")
        object.__setattr__(self, "seed", SEED_BOUNDS.parse("seed", self.seed))
        # 0 stands for "no corruption": the other shifts' severity
        bounds = SEVERITY_BOUNDS if self.shift == "input" else Bounds(int, 0, SEVERITY_BOUNDS.maximum)
        object.__setattr__(self, "severity", bounds.parse("severity", self.severity))

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

    def key(self) -> str:
        """A hash of this config (as given, or resolved) and the code version."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:24]
