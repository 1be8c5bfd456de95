"""Tensors kept on disk (safetensors) with the SHA-256 of their bytes in the file's metadata.

Written to a temporary name and renamed, so a crash never leaves half a file; checked when read, so a file
damaged on disk (cut short, bytes overwritten) is refused instead of being read as numbers: a damaged
digits render once hung a run and stored wrong accuracies, a damaged kept Newton step stored wrong weights.

A full check hashes every byte (0.15 s of CPU for the 196 MB digits renders), so once a file passes it its stat
stamp (size, modification and change times, inode, device) is kept beside it in `<name>.checked`; a later load
whose file still has that stamp skips the hash. Any write changes the change time, which no user can set, so a
file rewritten in place is checked in full again; so is a file changed within RACY_NS of its check, whose next
change could fall in the same timestamp tick (coarse kernel clocks, FAT's 2 s).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .paths import write_atomic

CHECKSUM = "sha256"
SIDECAR = ".checked"  # suffix of the stamp file beside a kept file (a `*.safetensors` listing skips it)
RACY_NS = 2_000_000_000  # a file changed this recently is not stamped: its next change could keep the stamp


class DamagedFile(ValueError):
    """A kept file that cannot be trusted: unreadable, or not the bytes it was written with."""


class NoChecksum(DamagedFile):
    """A file that reads, but holds no checksum: not written by `save` (or by a form older than it)."""


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
    when it cannot be read or its bytes are not the ones written (hashed unless its stamp shows it checked)."""
    started, before = time.time_ns(), _stamp(path)
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
        raise NoChecksum("no checksum recorded in it")
    stamp = before if before is not None and before == _stamp(path) else None  # None: it changed while read
    checked = {"stamp": stamp, CHECKSUM: recorded}
    if stamp is not None and _sidecar_holds(path, checked):
        return tensors, metadata
    if recorded != checksum(tensors):
        raise DamagedFile("its bytes are not the ones written (SHA-256 mismatch)")
    if stamp is not None and stamp[2] < started - RACY_NS:  # stamp[2]: its change time
        with contextlib.suppress(OSError):  # a folder that cannot be written only costs later loads the hash
            write_atomic(sidecar(path), lambda tmp: tmp.write_text(json.dumps(checked)))
    return tensors, metadata


def remove(path: Path) -> None:
    """Delete a kept file and its stamp (either may be gone already)."""
    path.unlink(missing_ok=True)
    sidecar(path).unlink(missing_ok=True)


def sidecar(path: Path) -> Path:
    """Where the stamp under which `path` last passed a full check is kept."""
    return path.with_name(path.name + SIDECAR)


def _stamp(path: Path) -> list[int] | None:
    """What any change to the file changes: size, modification and change times, inode, device; None if unknown."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _sidecar_holds(path: Path, checked: dict) -> bool:
    """Whether `path`'s sidecar records `checked` (its current stamp and recorded checksum); False if unreadable."""
    try:
        return json.loads(sidecar(path).read_text()) == checked
    except (OSError, ValueError):
        return False
