"""Surgical fine-tuning by cross-validation (Lee et al., ICLR 2023, "Surgical Fine-Tuning Improves
Adaptation to Distribution Shifts").

Candidates: each of Lee et al.'s blocks b (`partition(model, "block")`, whatever the run's layer
granularity) fine-tuned alone, then "all layers". Each candidate fine-tunes a fresh copy of the
pretrained model with the run's recipe; the winner is

    b* = argmax_b  val_acc(b),    alpha_l = 1 if layer l lies in b* (all ones if b* = "all"), else 0,

and its test accuracy is reported. Choices the paper leaves open:

- val_acc is the candidate's best validation accuracy over its epochs (epoch 0 = the pretrained
  model), i.e. the accuracy of the early-stopped model that `best_val_test_acc` reports;
- ties go to the earlier block, "all" comes last (so it wins only when strictly better);
- a run layer lies in the block holding its first parameter (a module-granularity layer's conv and
  BatchNorm always share a block);
- scores: each layer's block's val_acc; `extras["candidates"]` keeps every candidate's numbers.
`run` leaves the model as the winner's fine-tuned model and returns the winner's result; `weights`
runs the same search (it is costly by nature) and leaves the model as it was.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ..finetune import FinetuneResult, finetune
from ..layers import Layer, partition
from ._probes import offset_progress
from .base import LayerWeights, Method, MethodContext

ALL = "all"


@dataclass
class _Search:
    """The winning candidate: its weights, result and fine-tuned state."""

    chosen: LayerWeights
    result: FinetuneResult
    state: dict[str, torch.Tensor]


def block_of_layers(layers: list[Layer], blocks: list[Layer]) -> list[int]:
    """For each layer, the index of the block that holds its first parameter."""
    owner = {p: b for b, block in enumerate(blocks) for p in block.param_names}
    return [owner[layer.param_names[0]] for layer in layers]


def _candidates(ctx: MethodContext) -> tuple[list[tuple[str, list[float]]], list[int]]:
    """(name, multipliers over ctx.layers) for each block alone, then all layers; and each layer's block."""
    blocks = partition(ctx.model, "block")
    owner = block_of_layers(ctx.layers, blocks)
    alone = [(block.name, [1.0 if o == b else 0.0 for o in owner]) for b, block in enumerate(blocks)]
    return [*alone, (ALL, [1.0] * len(ctx.layers))], owner


class CrossValidation(Method):
    """Surgical fine-tuning (Lee et al. 2023): the block whose fine-tuning alone validates best."""

    name = "cross-validation"
    summary = "Surgical fine-tuning (Lee et al. 2023): fine-tune each block alone (and all); keep the best on val."
    one_hot = True
    order = 20

    def weights(self, ctx: MethodContext) -> LayerWeights:
        return self._search(ctx).chosen

    def run(self, ctx: MethodContext) -> tuple[LayerWeights, FinetuneResult]:
        search = self._search(ctx)
        ctx.model.load_state_dict(search.state)
        return search.chosen, search.result

    def _search(self, ctx: MethodContext) -> _Search:
        """Fine-tune every candidate on its own copy of the model; keep the first with the best val acc."""
        candidates, owner = _candidates(ctx)
        total = len(candidates) * ctx.recipe.epochs
        rows: list[dict] = []
        best: _Search | None = None
        for i, (name, multipliers) in enumerate(candidates):
            ctx.note(f"cross-validation: {name} ({i + 1}/{len(candidates)})")
            model = copy.deepcopy(ctx.model)
            progress = offset_progress(ctx.progress, i * ctx.recipe.epochs, total, candidate=name)
            result = finetune(model, ctx.layers, multipliers, ctx.data, ctx.recipe, ctx.seed, ctx.device, None,
                              progress)
            rows.append({"name": name, "val_acc": result.best_val_acc, "test_acc": result.test_acc,
                         "best_val_test_acc": result.best_val_test_acc, "best_val_epoch": result.best_val_epoch})
            if best is None or result.best_val_acc > best.result.best_val_acc:
                best = _Search(LayerWeights([], list(multipliers), {"chosen": name}), result, model.state_dict())
        best.chosen.scores = [rows[o]["val_acc"] for o in owner]
        best.chosen.extras["candidates"] = rows
        return best
