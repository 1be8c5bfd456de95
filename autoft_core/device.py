"""Device choice: CUDA when present, else CPU; the precision, layout and CPU-thread settings that go with it.

CPU thread policy (`thread_policy`, around every run): a small network (under SMALL_MODEL_PARAMS weights,
the embedded digits ResNet) runs on one intra-op thread. Its operations are too small to split, and
on a shared machine OpenMP's threads spin-wait for a busy core: two threads on two loaded cores ran
the plain loop at 322 images/s against 2720 with one. `AUTOFT_THREADS=N` sets the count for every run
(sweep workers get their share of the cores this way); larger models keep torch's default. The
setting is restored when the run ends. A run on fewer threads than there are cores, when no
AUTOFT_THREADS pins it, evaluates on a second thread beside training (`spare_cpu_core`).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from .cores import cpu_count
from .errors import BadArgumentError
from .threads import fixed_cpu_threads

THREADS_ENV = "AUTOFT_THREADS"
COMPILE_ENV = "AUTOFT_COMPILE"
AUTOTUNE_ENV = "AUTOFT_CUDNN_BENCHMARK"
SMALL_MODEL_PARAMS = 2_000_000
# Dense bf16 tensor-core peaks (FLOP/s) by device-name marker, the first match wins: the H100 PCIe and
# NVL cards are slower than the SXM one whose figure is often quoted for all three.
PEAK_BF16 = ((("H100", "PCIe"), 756e12), (("H100", "NVL"), 835e12), (("H100",), 989e12), (("H200",), 989e12),
             (("A100",), 312e12), (("L40S",), 362e12), (("L4",), 121e12))


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
    """Move to the device in channels_last (NHWC) layout: oneDNN's CPU convolutions train the digits net
    1.25x faster in it and cuDNN's run on tensor cores. cuDNN's autotuner only with AUTOFT_CUDNN_BENCHMARK=1:
    on an H200 (2026-11-27) it made a process's first CIFAR-10-C-sized WRN-28-10 run 22.7 s against 7.1 s
    (a search per new batch shape) and later runs no faster (6.1 s either way). A model already placed is
    returned untouched."""
    if device.type == "cuda" and os.environ.get(AUTOTUNE_ENV) == "1":
        torch.backends.cudnn.benchmark = True
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.device.type != device.type for t in tensors):
        model = model.to(device)
    if device.type == "cpu" and _has_unsafe_cpu_channels_last_conv(model):
        return model
    if any(t.dim() == 4 and not t.is_contiguous(memory_format=torch.channels_last) for t in tensors):
        model = model.to(memory_format=torch.channels_last)
    return model


def _has_unsafe_cpu_channels_last_conv(model: torch.nn.Module) -> bool:
    """Whether the model has a 1x1, strided, unpadded convolution reading fewer than 8 channels: in torch
    2.14.1 on the CPU its weight gradient in channels_last corrupts the heap (the process aborts with
    "corrupted size vs. prev_size"; reproduced with a bare Conv2d(4, 8, 1, stride=2)), so such a model
    stays NCHW."""
    return any(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) and max(m.stride) > 1
               and m.padding in ((0, 0), "valid") and m.in_channels < 8 for m in model.modules())


def fused_kwargs(device: torch.device) -> dict[str, bool]:
    """torch.optim keyword for its fastest Adam/SGD kernel (fused exists on CPU and CUDA in our torch)."""
    return {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}


def maybe_compile(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`torch.compile(module)` on CUDA when AUTOFT_COMPILE=1 (first steps pay the compilation), else as is."""
    if device.type == "cuda" and os.environ.get(COMPILE_ENV) == "1":
        return torch.compile(module)
    return module


def peak_bf16_flops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU from its name (e.g. "NVIDIA H100 PCIe"), None when not in the table."""
    words = device_name.replace("-", " ").split()
    for markers, flops in PEAK_BF16:
        if all(m in words for m in markers):
            return flops
    return None


def run_threads(model: torch.nn.Module, device: torch.device) -> int | None:
    """Intra-op threads for a run: AUTOFT_THREADS when set, 1 for a small model on the CPU, else None
    (torch's default)."""
    given = os.environ.get(THREADS_ENV)
    if given:
        try:
            threads = int(given)
        except ValueError:
            threads = 0
        if threads < 1:
            raise BadArgumentError(THREADS_ENV, given, "a whole number >= 1")
        return threads
    if device.type == "cpu" and sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS:
        return 1
    return None


def thread_policy(model: torch.nn.Module, device: torch.device) -> contextlib.AbstractContextManager[None]:
    """Run with `run_threads` intra-op threads, restoring the previous count afterwards."""
    return fixed_cpu_threads(run_threads(model, device))


def spare_cpu_core(device: torch.device) -> bool:
    """Whether a CPU run leaves a core free beside its intra-op threads (fewer threads than the process's
    cores) and is no sweep worker (AUTOFT_THREADS set: its share of the cores is all it gets): there,
    evaluation runs on a second thread beside training (finetune.py)."""
    return device.type == "cpu" and THREADS_ENV not in os.environ and torch.get_num_threads() < cpu_count()


@contextlib.contextmanager
def pinned_threads(threads: int | None) -> Iterator[None]:
    """Every run inside uses `threads` intra-op threads (through AUTOFT_THREADS), whatever its model: how
    sweep workers take their share of the cores. None changes nothing."""
    if threads is None:
        yield
        return
    before = os.environ.get(THREADS_ENV)
    os.environ[THREADS_ENV] = str(threads)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(THREADS_ENV, None)
        else:
            os.environ[THREADS_ENV] = before
