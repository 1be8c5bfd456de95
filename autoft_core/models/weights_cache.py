"""Pretrained source models cached as safetensors, keyed by a hash of their training recipe.

A changed recipe (data, architecture, epochs, lr, seed...) gives a new hash and so a retrain; the file
is written to a temporary name and renamed, so a crash never leaves a half-written checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from ..paths import cache_dir


def recipe_hash(recipe: dict) -> str:
    """A short stable hash of a JSON-serialisable recipe."""
    blob = json.dumps(recipe, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cached_path(name: str, recipe: dict) -> Path:
    return cache_dir() / "models" / f"{name}-{recipe_hash(recipe)}.safetensors"


def cached_model(name: str, recipe: dict, build: Callable[[], nn.Module],
                 train: Callable[[nn.Module], None]) -> nn.Module:
    """`build()` with the cached weights for `recipe`, training with `train(model)` on first use."""
    path = cached_path(name, recipe)
    model = build()
    if path.exists():
        model.load_state_dict(load_file(str(path)))
        return model.eval()
    train(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp), metadata={"recipe": json.dumps(recipe, sort_keys=True, default=str)})
    os.replace(tmp, path)
    return model.eval()
