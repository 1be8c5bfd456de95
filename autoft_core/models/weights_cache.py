"""Pretrained source models cached as safetensors, keyed by a hash of their training recipe and of the
CPU that trains them (`cpu_isa.kernel_tag`: its model and any kernel cap set otherwise).

A changed recipe (data, architecture, epochs, lr, seed...) gives a new hash and so a retrain. The file is
kept by `kept_tensors`: written to a temporary name and renamed (a crash never leaves half a checkpoint),
the SHA-256 of its tensors in its metadata, checked in full on the first load and then trusted while its
stat stamp holds. A file that fails the check (cut short, edited, damaged on disk) or does not fit the
model is rebuilt, with a warning, instead of failing every run; a cache that cannot be written is a
warning too, and the trained model is used all the same.

Files cached before 2026-11-28 kept their SHA-256 beside them (`<file>.sha256`) or, older still, none: one
that matches that hash, or has none and loads, is rewritten in the current form on its first load rather
than retrained (a BREEDS source model trains for hours).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from .. import kept_tensors
from ..cpu_isa import kernel_tag
from ..paths import cache_dir

LEGACY_HASH = ".sha256"  # suffix of the hash file a cached model had beside it before 2026-11-28


def recipe_hash(recipe: dict) -> str:
    """A short stable hash of a JSON-serialisable recipe."""
    blob = json.dumps(recipe, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cached_path(name: str, recipe: dict) -> Path:
    """Where the model `recipe` trains is cached; another CPU, or other kernels, train another model."""
    keyed = {**recipe, "cpu_kernels": kernel_tag()}
    return cache_dir() / "models" / f"{name}-{recipe_hash(keyed)}.safetensors"


def _legacy_state(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a file cached before checksums went into the metadata, when it matches the hash kept
    beside it (or has none and loads); DamagedFile when it cannot be trusted."""
    hash_file = path.with_name(path.name + LEGACY_HASH)
    try:
        if hash_file.is_file() and hash_file.read_text().strip() != hashlib.sha256(path.read_bytes()).hexdigest():
            raise kept_tensors.DamagedFile(f"it does not match the SHA-256 in {hash_file.name}")
        return load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise kept_tensors.DamagedFile(f"unreadable: {exc}") from exc


def _upgraded(path: Path, metadata: dict[str, str]) -> dict[str, torch.Tensor]:
    """The tensors of a file in the form before 2026-11-28, rewritten in the current one (a cache that cannot
    be written keeps the old form); DamagedFile when they cannot be trusted."""
    state = _legacy_state(path)
    with contextlib.suppress(OSError, SafetensorError):
        kept_tensors.save(path, state, metadata)
        path.with_name(path.name + LEGACY_HASH).unlink(missing_ok=True)
    return state


def _cached_state(path: Path, metadata: dict[str, str]) -> dict[str, torch.Tensor] | None:
    """The cached tensors at `path`; None when there are none or they cannot be trusted (with a warning)."""
    try:
        try:
            return kept_tensors.load(path)[0]
        except kept_tensors.NoChecksum:
            return _upgraded(path, metadata)
    except FileNotFoundError:
        return None
    except kept_tensors.DamagedFile as exc:
        warnings.warn(f"cached model {path} is damaged ({exc}); rebuilding it", stacklevel=3)
        return None


def cached_model(name: str, recipe: dict, build: Callable[[], nn.Module],
                 train: Callable[[nn.Module], None]) -> nn.Module:
    """`build()` with the cached weights for `recipe`, training with `train(model)` on first use (or when
    the cached file is damaged)."""
    path = cached_path(name, recipe)
    metadata = {"recipe": json.dumps(recipe, sort_keys=True, default=str)}
    model = build()
    state = _cached_state(path, metadata)
    if state is not None:
        try:
            model.load_state_dict(state)
            return model.eval()
        except RuntimeError as exc:  # its tensors do not fit the model
            warnings.warn(f"cached model {path} is damaged ({exc}); rebuilding it", stacklevel=2)
            model = build()  # the failed load may have filled part of it
    train(model)
    try:
        kept_tensors.save(path, model.state_dict(), metadata)
    except (OSError, SafetensorError) as exc:  # the trained model is still good for this process
        warnings.warn(f"could not keep the trained model in {path.parent} ({exc}); the next process trains it "
                      "again", stacklevel=2)
    return model.eval()
