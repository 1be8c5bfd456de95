"""Tensors kept on disk (safetensors) with the SHA-256 of their bytes in the file's metadata.

Written to a temporary name and renamed, so a crash never leaves half a file; checked when read, so a file
damaged on disk (cut short, bytes overwritten) is refused instead of being read as numbers: a damaged
digits render once hung a run and stored wrong accuracies, a damaged kept Newton step stored wrong weights.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .paths import write_atomic

CHECKSUM = "sha256"


class DamagedFile(ValueError):
    """A kept file that cannot be trusted: unreadable, or not the bytes it was written with."""


def checksum(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over each tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def save(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` (on the CPU) and `metadata` with their checksum, atomically."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    tagged = {**(metadata or {}), CHECKSUM: checksum(tensors)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=tagged))


def load(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (on the CPU) and metadata kept at `path`; FileNotFoundError when there is none, DamagedFile
    when it cannot be read or its bytes are not the ones written."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except FileNotFoundError:
        raise
    except (OSError, SafetensorError, ValueError) as exc:
        raise DamagedFile(f"unreadable: {exc}") from exc
    recorded = metadata.pop(CHECKSUM, None)
    if recorded is None:
        raise DamagedFile("no checksum recorded in it")
    if recorded != checksum(tensors):
        raise DamagedFile("its bytes are not the ones written (SHA-256 mismatch)")
    return tensors, metadata
