"""Damped Newton steps of an untouched source model kept on disk, so a new process reuses them.

+hessian+change's source step depends only on the source model, the seeded source sample and the
solver (`_gradients.layer_newton_steps`): the same for every target of that model, in every process. The
first target pays the source solve (about as much as the target's); every later one, in this or any
other process (sweep workers, a restarted dashboard), reads it here.

Files: `<cache>/newton_steps/<key>.safetensors`, one float32 vector per layer and the solver's diagnostics
as JSON metadata; the key hashes the in-process key (model state, sample, layers, solver, device), the
engine's code version (which covers the CPU kernels) and torch's version, so a step is never reused by
other code. Written to a temporary name and renamed (never half a file), with the SHA-256 of its bytes
(`kept_tensors`; its `.checked` stamp beside it goes with it); a file that cannot be read, is not the bytes
written or does not fit the layers is solved again and rewritten, with a warning; a folder that cannot be
written is a warning, not a failed run. The oldest files go once the folder passes `KEPT_BYTES` (one file
holds one model-sized vector: 0.1 MB for the digits net, 146 MB for WRN-28-10).
"""
from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Hashable, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError

from .. import kept_tensors
from ..config import code_version
from ..paths import cache_dir
from ._curvature import NewtonSteps

KEPT_BYTES = 1 << 30  # the folder's bound (1 GiB): the least recently written files go first


def folder() -> Path:
    """Where the kept steps live."""
    return cache_dir() / "newton_steps"


def path_for(key: Hashable) -> Path:
    """The file of the step solved under the in-process `key`, for this code and torch."""
    blob = repr((key, code_version(), torch.__version__)).encode()
    return folder() / f"{hashlib.sha256(blob).hexdigest()[:24]}.safetensors"


def load(key: Hashable, sizes: Sequence[int], device: torch.device) -> NewtonSteps | None:
    """The kept step for `key` on `device`, or None when there is none or it does not fit (`sizes`: each
    layer's parameter count) or is damaged (its SHA-256, `kept_tensors`)."""
    path = path_for(key)
    try:
        tensors, metadata = kept_tensors.load(path)
        steps = [tensors.pop(f"step.{i}").to(device) for i in range(len(sizes))]
        diagnostics = json.loads(metadata["diagnostics"])
        if tensors or len(diagnostics) != len(sizes) or [s.numel() for s in steps] != list(sizes):
            raise ValueError("its vectors do not fit the model's layers")
    except FileNotFoundError:  # none kept (or another process's trim just removed it)
        return None
    except (KeyError, TypeError, ValueError) as exc:  # kept_tensors.DamagedFile is a ValueError
        warnings.warn(f"kept Newton step {path} is damaged ({exc}); solving it again", stacklevel=3)
        return None
    return NewtonSteps(steps, diagnostics)


def save(key: Hashable, steps: NewtonSteps) -> None:
    """Keep `steps` for `key`, then trim the folder to `KEPT_BYTES`; a folder that cannot be written only costs
    the next process the solve (a warning, the run goes on)."""
    path = path_for(key)
    tensors = {f"step.{i}": s for i, s in enumerate(steps.steps)}
    try:
        kept_tensors.save(path, tensors, {"diagnostics": json.dumps(steps.diagnostics)})
        _trim(keep=path)
    except (OSError, SafetensorError) as exc:
        warnings.warn(f"could not keep the Newton step in {path.parent} ({exc}); the next process solves it again",
                      stacklevel=3)


def _trim(keep: Path) -> None:
    """Remove the oldest kept files beyond `KEPT_BYTES`, never `keep`."""
    found = []
    for path in folder().glob("*.safetensors"):
        try:
            stat = path.stat()
        except OSError:  # another process removed it meanwhile
            continue
        found.append((stat.st_mtime, stat.st_size, path))
    total = 0
    for _, size, path in sorted(found, reverse=True):
        total += size
        if total > KEPT_BYTES and path != keep:
            kept_tensors.remove(path)


def forget() -> None:
    """Remove every kept step (benchmarks time a source model's first use)."""
    for path in folder().glob("*.safetensors"):
        kept_tensors.remove(path)
