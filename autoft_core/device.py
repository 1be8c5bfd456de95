"""Device choice: CUDA when present, else CPU; the precision and layout settings that go with it."""
from __future__ import annotations

import contextlib

import torch

from .errors import BadArgumentError


def resolve_device(name: str | None = None) -> torch.device:
    """`None`/"auto" -> cuda if available else cpu; "cuda" without a GPU is a clear error."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BadArgumentError("device", name, "cpu, auto (no CUDA GPU is visible)")
    if name != "cpu" and not name.startswith("cuda"):
        raise BadArgumentError("device", name, "auto, cpu, cuda")
    return torch.device(name)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (tensor cores); full fp32 on CPU, where bf16 convs are slower."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move to the device; channels_last on CUDA, where cuDNN's NHWC convolutions are fastest."""
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model
