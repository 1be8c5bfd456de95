"""How a setup makes a source model that the engine does not ship trained: through `finetune()`, on the
setup's own source split, cached by `models.weights_cache` under a hash of everything that shapes it.

Used by the embedded ViT (trained from scratch on the digits source) and by the `folder` setup (a new
head fitted on the source folder when the checkpoint's head has another class count).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..core.data import Split, TaskData
from ..core.recipe import Recipe
from ..device import resolve_device
from ..finetune import finetune
from ..layers import Layer
from ..models.weights_cache import cached_model
from ..threads import fixed_cpu_threads

HOLDOUT = 0.1  # share of the source split held out to validate on


def split_digest(split: Split) -> str:
    """A short hash of a split's tensors: a changed source set retrains the cached model."""
    digest = hashlib.sha256()
    for tensor in (split.x, split.y):
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def holdout_task(source: Split, num_classes: int, seed: int = 0, share: float = HOLDOUT) -> TaskData:
    """The source split as a task: a seeded `share` for validation and test, the rest to train on."""
    order = torch.randperm(len(source), generator=torch.Generator().manual_seed(seed))
    cut = max(1, round(len(source) * share))
    held, train = source.subset(order[:cut]), source.subset(order[cut:])
    return TaskData(source=train, train=train, val=held, test=held, num_classes=num_classes)


def fit_on_source(model: nn.Module, source: Split, num_classes: int, phases: Sequence[Recipe],
                  only: str | None = None, seed: int = 0, device: torch.device | None = None) -> None:
    """Train `model` in place on the source split (HOLDOUT held out), one `finetune` per phase (e.g. a
    lower learning rate to finish) on `device` (None: CUDA when present): every parameter, or only those
    under the module named `only`."""
    names = [n for n, _ in model.named_parameters()]
    trained = tuple(n for n in names if only is None or n == only or n.startswith(f"{only}."))
    frozen = tuple(n for n in names if n not in trained)
    layers = [Layer("trained", (), trained)] + ([Layer("frozen", (), frozen)] if frozen else [])
    task = holdout_task(source, num_classes, seed)
    for recipe in phases:
        finetune(model, layers, [1.0, 0.0][:len(layers)], task, recipe, seed, device)


def _seeded(build: Callable[[], nn.Module]) -> nn.Module:
    """`build()` with its random initialisation drawn from a fixed seed (the global RNG left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


def trained_source_model(name: str, identity: dict, build: Callable[[], nn.Module], source: Split,
                         num_classes: int, phases: Sequence[Recipe], only: str | None = None,
                         device: str | None = None, threads: int | None = None) -> nn.Module:
    """`build()` trained by `fit_on_source` on `device` (None: CUDA when present), on `threads` CPU threads
    when given (the count changes a CPU model's weights), cached under `name` and a hash of `identity`, the
    source split's digest, the phases' recipes, the device's type (bf16 autocast on CUDA trains other weights
    than the CPU's fp32) and the thread count; in eval mode."""
    where = resolve_device(device)
    key = {**identity, "source": split_digest(source), "classes": num_classes, "only": only, "holdout": HOLDOUT,
           "phases": [recipe.to_dict() for recipe in phases], "device": where.type,
           **({"threads": threads} if threads is not None else {})}

    def train(model: nn.Module) -> None:
        with fixed_cpu_threads(threads):
            fit_on_source(model, source, num_classes, phases, only, device=where)

    return cached_model(name, key, lambda: _seeded(build), train)
