"""Helpers for methods that probe a model layer by layer or chain several fine-tuning runs.

Probing (module criticality): edit one layer's modules in place, measure the loss on a fixed sample
without gradients, roll the model back exactly (`_common.restored`); the per-probe losses stay on
the device and are read back with one host sync. Chaining (cross-validation, LP-FT): one progress
bar over all the runs' epochs.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..core.data import Split
from ..evaluation import EVAL_BATCH
from ..finetune import Progress
from ..layers import Layer
from ._common import mean_loss, minibatches, restored

Edit = Callable[[list[nn.Module], int], None]  # edits one layer's modules in place, given the layer's index


def probe_sample(split: Split, samples: int, seed: int) -> Split:
    """A fixed, seeded sample of at most `samples` examples of `split` (the same for every probe)."""
    x, y = next(minibatches(split, 1, samples, seed))
    return Split(x, y)


@torch.no_grad()
def _loss(model: nn.Module, sample: Split) -> torch.Tensor:
    """Mean cross-entropy of `model` in eval mode over `sample`, in large batches (stays on the device)."""
    model.eval()
    total = torch.zeros((), device=sample.x.device)
    for start in range(0, len(sample), EVAL_BATCH):
        x, y = sample.x[start:start + EVAL_BATCH], sample.y[start:start + EVAL_BATCH]
        total += mean_loss(model, x, y).float() * len(y)
    return total / max(len(sample), 1)


def probe_losses(model: nn.Module, layers: Sequence[Layer], sample: Split, edit: Edit) -> tuple[float, list[float]]:
    """(loss of the model as it is, loss with each layer's modules edited), the model restored after each."""
    base = _loss(model, sample)
    probes = []
    for index, layer in enumerate(layers):
        with restored(model), torch.no_grad():
            edit([model.get_submodule(name) for name in layer.module_names], index)
            probes.append(_loss(model, sample))
    values = torch.stack([base, *probes]).double().cpu().tolist()
    return values[0], values[1:]


def offset_progress(progress: Progress | None, offset: int, total: int, **tags: object) -> Progress | None:
    """`progress` for one run of a chain: epochs counted from `offset` out of `total`, stats tagged."""
    if progress is None:
        return None
    return lambda epoch, _, stats: progress(offset + epoch, total, {**stats, **tags})
