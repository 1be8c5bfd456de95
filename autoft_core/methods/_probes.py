"""Helpers for methods that probe a model layer by layer or chain several fine-tuning runs.

Probing (module criticality): `LayerProbe` runs the unchanged network once over a fixed sample,
keeping the input of every stage of its forward chain (`stages.model_stages`; a model without one
is a single stage). A probe of layer l edits only l's modules in place, runs the stages from the
first one holding l's parameters, then puts back just those modules' parameters and buffers (no
copy of the whole model). Every pass is fp32 without autocast (`_common.full_precision`, as the
gradient probes): under bf16 a small loss increase would drown in rounding. Losses stay on the
device and are read back with one host sync. Chaining (cross-validation, LP-FT): one progress bar over
all the runs' epochs.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core.data import Split
from ..evaluation import EVAL_BATCH
from ..finetune import Progress
from ..layers import Layer, layer_parameters
from ..stages import model_stages
from ._common import full_precision, seeded_sample

Edit = Callable[[list[nn.Module]], None]  # edits one layer's modules in place


def probe_sample(split: Split, samples: int, seed: int) -> Split:
    """A fixed, seeded sample of at most `samples` examples of `split` (0: all; the same for every probe)."""
    return seeded_sample(split, samples, seed)


class LayerProbe:
    """Losses of a model (eval mode, no gradients) on a fixed sample with one layer edited at a time."""

    def __init__(self, model: nn.Module, layers: Sequence[Layer], sample: Split) -> None:
        self.model, self.layers, self.sample = model, list(layers), sample
        self.stages = model_stages(model) or [model]
        owner = {id(p): k for k, stage in enumerate(self.stages) for p in stage.parameters()}
        self.first_stage = [min(owner[id(p)] for p in group) for group in layer_parameters(model, layers)]
        with torch.no_grad(), full_precision():
            self.inputs = [sample.x]
            for stage in self.stages[:-1]:
                stage.eval()
                self.inputs.append(torch.cat([stage(x) for x in self.inputs[-1].split(EVAL_BATCH)]))
        self.base = self._loss(len(self.stages) - 1)

    @torch.no_grad()
    def _loss(self, first: int) -> torch.Tensor:
        """Mean cross-entropy of the stages from `first` on, from their cached input (stays on the device)."""
        rest = nn.Sequential(*self.stages[first:]).eval()
        total = torch.zeros((), device=self.sample.x.device)
        with full_precision():
            for x, y in zip(self.inputs[first].split(EVAL_BATCH), self.sample.y.split(EVAL_BATCH)):
                total += F.cross_entropy(rest(x), y) * len(y)
        return total / max(len(self.sample), 1)

    @torch.no_grad()
    def edited_loss(self, index: int, edit: Edit) -> torch.Tensor:
        """The loss with layer `index`'s modules edited by `edit`; those modules are put back after."""
        modules = [self.model.get_submodule(name) for name in self.layers[index].module_names]
        saved = [{k: v.clone() for k, v in module.state_dict().items()} for module in modules]
        try:
            edit(modules)
            return self._loss(self.first_stage[index])
        finally:
            for module, state in zip(modules, saved):
                module.load_state_dict(state)


def offset_progress(progress: Progress | None, offset: int, total: int, **tags: object) -> Progress | None:
    """`progress` for one run of a chain: epochs counted from `offset` out of `total`, stats tagged."""
    if progress is None:
        return None
    return lambda epoch, _, stats: progress(offset + epoch, total, {**stats, **tags})
