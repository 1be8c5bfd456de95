"""Accuracy and parameter-change metrics, computed in large no-grad batches on the model's device.

`cached_accuracy` remembers the accuracy of a model state on a split, keyed by their contents (digests of
the state dict and of the split's tensors, digest.py), so the pretrained model's zero-shot accuracy is computed
once per task and reused by every method and every cross-validation candidate in the process.
`Evaluator` measures a network's states at once, or on a worker thread while the caller trains on
(a spare CPU core evaluates epoch k during epoch k + 1): the same kernels on the same thread count,
so the same numbers.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from torch import nn

from .core.data import Split
from .device import autocast
from .digest import tensor_digest
from .layers import Layer
from .memo import Remembered

# Images per evaluation batch: a power of two keeping a batch's input within this many values, clamped.
# On the CPU batches beyond a few hundred small images run slower per image (the activations leave the
# caches: the digits net takes 0.30 ms per image at 1024 against 0.18 at 128); on CUDA large batches fill the GPU.
EVAL_ELEMENTS = {"cpu": 2**19, "cuda": 2**27}
EVAL_BATCH = 1024  # the largest CPU batch (methods/_probes.py still batches by it; `eval_batch` is better)
EVAL_BATCH_RANGE = {"cpu": (8, EVAL_BATCH), "cuda": (8, 4096)}
ACCURACY_CACHE_SIZE = 256

_accuracies: Remembered[float] = Remembered(ACCURACY_CACHE_SIZE)  # results arrive from evaluation threads


def eval_batch(x: torch.Tensor, device: torch.device) -> int:
    """Images per evaluation batch for inputs like `x` on `device` (128 CIFAR-sized images on the CPU,
    4096 on CUDA; 512 at 224 px on CUDA)."""
    kind = "cuda" if device.type == "cuda" else "cpu"
    low, high = EVAL_BATCH_RANGE[kind]
    fits = EVAL_ELEMENTS[kind] // max(1, math.prod(x.shape[1:]))
    return max(low, min(high, 2 ** int(math.log2(max(1, fits)))))


@torch.inference_mode()
def accuracy(model: nn.Module, split: Split) -> float:
    """Top-1 accuracy of `model` (put in eval mode) on `split`; one host sync at the end."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    batch_size = eval_batch(split.x, device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    with autocast(device):
        for start in range(0, len(split), batch_size):
            x = split.x[start:start + batch_size].to(device, non_blocking=True)
            y = split.y[start:start + batch_size].to(device, non_blocking=True)
            correct += (model(x).argmax(dim=1) == y).sum()
    model.train(was_training)
    return correct.item() / max(len(split), 1)


def cached_accuracy(model_key: str, split: Split, device: torch.device,
                    compute: Callable[[], Future[float]]) -> Future[float]:
    """The accuracy of the model state `model_key` (`digest.model_digest`) on `split` on this kind of device:
    remembered, or `compute()`'s, remembered once it arrives (e.g. the rest of the network on a frozen
    prefix's features: the same number as the whole model on the images)."""
    key = (model_key, tensor_digest(split.x), tensor_digest(split.y), device.type)
    known = _accuracies.get(key)
    if known is not None:
        return _done(known)
    future = compute()

    def remember(done: Future[float]) -> None:
        if done.exception() is None:
            _accuracies.put(key, done.result())

    future.add_done_callback(remember)
    return future


def clear_accuracy_cache() -> None:
    """Forget every remembered accuracy (benchmarks clear it so each run pays its own evaluation)."""
    _accuracies.clear()


def _done(value: float) -> Future[float]:
    future: Future[float] = Future()
    future.set_result(value)
    return future


def clone_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of `net`'s parameters and buffers that later training leaves alone (multi-tensor copies:
    a few kernel launches on CUDA instead of one per tensor)."""
    state = net.state_dict()
    copies = [torch.empty_like(v) for v in state.values()]
    _copy_all(copies, list(state.values()))
    return dict(zip(state, copies))


def load_state(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Write a `clone_state` of this very network back into its parameters and buffers (as load_state_dict,
    without its per-tensor copies and key checks)."""
    own = net.state_dict()
    _copy_all([v.detach() for v in own.values()], [state[k] for k in own])


@torch.no_grad()
def _copy_all(targets: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    """targets[i].copy_(sources[i]) for every i, one multi-tensor copy per dtype (mixed dtypes leave
    torch's fast path)."""
    by_dtype: dict[torch.dtype, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    for target, source in zip(targets, sources, strict=True):
        pair = by_dtype.setdefault(target.dtype, ([], []))
        pair[0].append(target)
        pair[1].append(source)
    for group_targets, group_sources in by_dtype.values():
        torch._foreach_copy_(group_targets, group_sources)


class Evaluator:
    """Accuracies of `net`'s states: with `background`, on one worker thread with its own copy of the
    network, in submission order, while the caller goes on changing `net`; else (or when `net` cannot be
    copied, e.g. a user's module holding a non-leaf tensor) at once. A context manager: leaving it cancels
    the evaluations not yet started, waits for the one running and stops the worker."""

    def __init__(self, net: nn.Module, background: bool) -> None:
        self.net = net
        self._replica = _copy_or_none(net) if background else None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="autoft-eval") if self._replica is not None else None

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def snapshot(self) -> dict[str, torch.Tensor] | None:
        """`net`'s current state for `submit` (None when evaluating at once: `net` itself is measured)."""
        return None if self._pool is None else clone_state(self.net)

    def submit(self, split: Split, state: dict[str, torch.Tensor] | None) -> Future[float]:
        """The accuracy on `split` of the state `snapshot` returned (at once: of `net` as it is now)."""
        if self._pool is None:
            return _done(accuracy(self.net, split))
        return self._pool.submit(self._measure, split, state)

    def _measure(self, split: Split, state: dict[str, torch.Tensor]) -> float:
        load_state(self._replica, state)
        return accuracy(self._replica, split)


def _copy_or_none(net: nn.Module) -> nn.Module | None:
    """A deep copy of `net` for the evaluation thread, or None when the module cannot be copied."""
    try:
        return copy.deepcopy(net)
    except (TypeError, RuntimeError, copy.Error):  # unpicklable attributes, non-leaf tensors
        return None


def flat_layer_params(model: nn.Module, layers: list[Layer]) -> list[torch.Tensor]:
    """Each layer's parameters as one detached fp32 vector: views of one fresh concatenation (a snapshot)."""
    named = dict(model.named_parameters())
    pieces = [[named[p].detach().flatten().float() for p in layer.param_names] for layer in layers]
    flat = torch.cat([t for group in pieces for t in group]) if any(pieces) else torch.zeros(0)
    return list(flat.split([sum(t.numel() for t in group) for group in pieces]))


def param_change(model: nn.Module, layers: list[Layer], initial: list[torch.Tensor]) -> list[float]:
    """‖θ_ft − θ_0‖ / ‖θ_0‖ per layer, against the snapshot `initial` taken before fine-tuning
    (multi-tensor norms: the same per-layer norms, in a few kernel launches on CUDA)."""
    if not layers:
        return []
    now = flat_layer_params(model, layers)
    change = torch.stack(torch._foreach_norm(torch._foreach_sub(now, initial)))
    return (change / torch.stack(torch._foreach_norm(initial)).clamp_min(1e-12)).cpu().tolist()
