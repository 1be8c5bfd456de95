"""Pretrained source models cached as safetensors, keyed by a hash of their training recipe and of the
CPU that trains them (`cpu_isa.kernel_tag`: its model and any kernel cap set otherwise).

A changed recipe (data, architecture, epochs, lr, seed...) gives a new hash and so a retrain; the file
is written to a temporary name and renamed, so a crash never leaves a half-written checkpoint. A
SHA-256 of the file is kept beside it (`.sha256`): a file that no longer matches it (cut short, edited,
damaged on disk) or cannot be loaded is rebuilt, with a warning, instead of failing every run; a cache
that cannot be written is a warning too, and the trained model is used all the same.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..cpu_isa import kernel_tag
from ..paths import cache_dir, write_atomic


def recipe_hash(recipe: dict) -> str:
    """A short stable hash of a JSON-serialisable recipe."""
    blob = json.dumps(recipe, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cached_path(name: str, recipe: dict) -> Path:
    """Where the model `recipe` trains is cached; another CPU, or other kernels, train another model."""
    keyed = {**recipe, "cpu_kernels": kernel_tag()}
    return cache_dir() / "models" / f"{name}-{recipe_hash(keyed)}.safetensors"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_verified(path: Path, model: nn.Module) -> bool:
    """Load the cached weights into `model` when the file matches its recorded hash; False to rebuild."""
    hash_file = path.with_name(path.name + ".sha256")
    try:
        recorded = hash_file.read_text().strip() if hash_file.is_file() else None
        if recorded is not None and recorded != _digest(path):
            raise ValueError("it does not match its recorded SHA-256")
        model.load_state_dict(load_file(str(path)))
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        warnings.warn(f"cached model {path} is damaged ({exc}); rebuilding it", stacklevel=3)
        return False
    if recorded is None:  # made before hashes were kept: record it now that it loaded
        write_atomic(hash_file, lambda tmp: tmp.write_text(_digest(path)))
    return True


def cached_model(name: str, recipe: dict, build: Callable[[], nn.Module],
                 train: Callable[[nn.Module], None]) -> nn.Module:
    """`build()` with the cached weights for `recipe`, training with `train(model)` on first use (or when
    the cached file is damaged)."""
    path = cached_path(name, recipe)
    model = build()
    if path.is_file():
        if _load_verified(path, model):
            return model.eval()
        model = build()  # the failed load may have filled part of it
    train(model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"recipe": json.dumps(recipe, sort_keys=True, default=str)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: save_file(state, str(tmp), metadata=metadata))
        write_atomic(path.with_name(path.name + ".sha256"), lambda tmp: tmp.write_text(_digest(path)))
    except (OSError, SafetensorError) as exc:  # the trained model is still good for this process
        warnings.warn(f"could not keep the trained model in {path.parent} ({exc}); the next process trains it "
                      "again", stacklevel=2)
    return model.eval()
