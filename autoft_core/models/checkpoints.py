"""Checkpoints read safely: your own weights (a state dict on disk, fitted to an architecture), and in
plain words why a real setup's checkpoint could not be read (never torch's advice to unpickle unsafely).

Files: `.safetensors`, or anything torch.save wrote, read with `torch.load(weights_only=True)` (no
code in a checkpoint ever runs). Accepted shapes: a state dict, or one nested under "state_dict",
"model" or "model_state_dict" (beside other entries such as the epoch or the optimizer's state, as training
scripts save them); a DataParallel "module." prefix is dropped; torchvision ViT names are converted
(models.vit), and ViT position embeddings are resized to another image size. NaN or infinite weights are
refused. A head whose
class count differs from the data's (its input width the model's) is left out and reported, so the caller
can fit a new one.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import AutoFTError, MissingFileError

if TYPE_CHECKING:  # torch is imported where a checkpoint is read: `require_checkpoint` stays light
    import torch
    from torch import nn

HOW = ("save one with torch.save(model.state_dict(), FILE) or safetensors.torch.save_file(model.state_dict(), "
       "FILE.safetensors)")
NESTED = ("state_dict", "model", "model_state_dict")
POSITIONS = "embed.positions"
# Whatever the weights-only loader raises on a file that is garbage, truncated, a bare tensor or a dict of the
# wrong layout.
CHECKPOINT_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, KeyError, IndexError, TypeError,
                     AttributeError, ValueError)


def require_checkpoint(path: Path) -> None:
    """A clear error when the checkpoint file is not there."""
    if path.is_dir():
        raise AutoFTError(f"checkpoint {path} is a folder; give --checkpoint FILE, the weights file itself: {HOW}")
    if not path.is_file():
        raise MissingFileError("checkpoint", path, f"Give --checkpoint FILE: {HOW}.")


def read_state_dict(path: Path) -> "dict[str, torch.Tensor]":
    """The parameters and buffers in a checkpoint file, by name (see the module doc for what is accepted)."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .vit import from_torchvision, is_torchvision_state

    require_checkpoint(path)
    try:
        if path.suffix == ".safetensors":
            state: object = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, *CHECKPOINT_ERRORS) as exc:  # garbage fails wherever the unpickler's parser stops
        # The library's own text is left out: torch's suggests weights_only=False, which would run the file's code.
        raise AutoFTError(f"could not read checkpoint {path} as weights ({type(exc).__name__}: not a safetensors "
                          f"file, nor tensors saved by torch.save); {HOW}") from exc
    state = _unnested(state, path)
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise AutoFTError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict "
                          f"(parameter name -> tensor); {HOW}")
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise AutoFTError(f"checkpoint {path} holds NaN or infinite values in {len(broken)} tensor(s) (e.g. "
                          f"{', '.join(broken[:3])}): the run that saved it diverged; save weights from before that")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return from_torchvision(state) if is_torchvision_state(state) else state


def _unnested(state: object, path: Path) -> object:
    """The state dict inside a training checkpoint: the value under the one NESTED key of a dict whose other
    entries (epoch, optimizer, ...) are not the weights; a dict of tensors is returned as it is."""
    import torch

    while isinstance(state, dict) and not all(isinstance(v, torch.Tensor) for v in state.values()):
        nested = [k for k in NESTED if isinstance(state.get(k), dict)]
        if len(nested) != 1:
            keys = ", ".join(map(str, list(state)[:6]))
            raise AutoFTError(f"checkpoint {path} holds a dict with keys {keys}, and not one of "
                              f"{', '.join(NESTED)} holding the weights; {HOW}")
        state = state[nested[0]]
    return state


def load_into(model: "nn.Module", state: "dict[str, torch.Tensor]", head: str, path: Path, arch: str) -> int | None:
    """Load `state` into `model`; the head's tensors are skipped when their shapes differ (the class
    count): then returns the checkpoint's class count, else None. Anything else that does not fit is
    an AutoFTError naming the first few names."""
    from .vit import resize_positions

    own = model.state_dict()
    state = dict(state)
    if POSITIONS in state and POSITIONS in own:
        state[POSITIONS] = resize_positions(state[POSITIONS], own[POSITIONS].shape[1])
    head_keys = [k for k in own if k.startswith(f"{head}.")]
    replaced = None
    other = [k for k in head_keys if k in state and state[k].shape != own[k].shape]
    # only another class count (the first dimension) is a head to replace; another input width is another model
    if other and all(state[k].shape[1:] == own[k].shape[1:] for k in other):
        replaced = int(state[f"{head}.weight"].shape[0]) if f"{head}.weight" in state else -1
        for k in head_keys:
            state.pop(k, None)
    missing = [k for k in own if k not in state and not (replaced is not None and k in head_keys)]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(v.shape)} (model {tuple(own[k].shape)})" for k, v in state.items()
             if k in own and v.shape != own[k].shape]
    if missing or unexpected or wrong:
        found = [f"{len(items)} {what} (e.g. {', '.join(items[:3])})" for what, items in
                 (("missing", missing), ("unexpected", unexpected), ("of another shape", wrong)) if items]
        raise AutoFTError(f"checkpoint {path} does not fit --arch {arch}: {'; '.join(found)}. "
                          "Pick the architecture it was saved from (and an image size its ViT patches divide)")
    model.load_state_dict(state, strict=False)
    return replaced


def checkpoint_problem(exc: BaseException) -> str:
    """What is wrong with the file, from the exception the loader raised on it."""
    if isinstance(exc, pickle.UnpicklingError):
        return ("it is not a torch checkpoint, or it holds Python objects other than tensors, which the safe "
                "(weights-only) loader refuses to unpickle")
    if isinstance(exc, EOFError):
        return "it is empty or cut short"
    if isinstance(exc, RuntimeError) and "state_dict" in str(exc):
        return "its tensors do not fit the model (another architecture, or other shapes)"
    if isinstance(exc, (RuntimeError, OSError)):
        return "it is not a torch checkpoint file, or it is cut short"
    return "it does not hold a state_dict of named tensors where one is expected"
