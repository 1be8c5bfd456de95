"""Surgical fine-tuning by cross-validation (Lee et al., ICLR 2023, "Surgical Fine-Tuning Improves
Adaptation to Distribution Shifts").

Candidates: `surgical` on each of Lee et al.'s blocks b (`partition(model, "block")`, whatever the run's
layer granularity), then `full` ("all"). Each candidate fine-tunes a fresh copy of the pretrained model
with the run's recipe; the winner is

    b* = argmax_b  val_acc(b),    alpha_l = 1 if layer l lies in b* (all ones if b* = "all"), else 0,

and its run is the result, so the reported test accuracy is the winner's final-epoch `test_acc`, the
statistic every method reports. Choices the paper leaves open:

- the "small, contiguous subset of layers" (Sec. 4.1) is one of Lee et al.'s blocks, as in their
  surgical fine-tuning: subsets of two or more blocks, or parts of a block, are not searched (each
  candidate costs a whole fine-tuning run);
- val_acc is the candidate's validation accuracy after its last epoch (the model whose test accuracy
  is reported; epoch 0, the pretrained model, when the recipe has no epochs);
- ties go to the earlier block, "all" comes last (so it wins only when strictly better). "all" is a
  candidate beyond the paper's definition ("a small, contiguous subset of layers", Sec. 4.1): a shift
  that needs every layer is one cross-validation should be able to see, so it never loses to full
  fine-tuning on validation;
- scores: each layer's block's val_acc; `extras["candidates"]` keeps every candidate's numbers (val_acc,
  best_val_acc, test_acc, best_val_test_acc, best_val_epoch).
`run` leaves the model as the winner's fine-tuned model and returns the winner's result; `weights`
runs the same search (it is costly by nature) and leaves the model as it was.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch

from ..finetune import FinetuneResult
from ..layers import partition
from ._probes import offset_progress
from .base import LayerWeights, Method, MethodContext
from .full import FullFineTuning
from .surgical import Surgical, block_of_layers

ALL = "all"


@dataclass
class _Search:
    """The winning candidate: its weights, result and fine-tuned state."""

    chosen: LayerWeights
    result: FinetuneResult
    state: dict[str, torch.Tensor]


def final_val_acc(result: FinetuneResult) -> float:
    """Validation accuracy of the model a run ends with (the pretrained model's when it had no epochs)."""
    return result.history[-1]["val_acc"] if result.history else result.best_val_acc


def _candidates(ctx: MethodContext) -> list[tuple[str, Method, dict]]:
    """(name, method, params) of each block alone (surgical), then all layers (full)."""
    blocks = partition(ctx.model, "block")
    return [*((block.name, Surgical(), {"block": str(b)}) for b, block in enumerate(blocks)),
            (ALL, FullFineTuning(), {})]


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
        """Run every candidate on its own copy of the model; keep the first with the best final val acc."""
        candidates = _candidates(ctx)
        epochs = ctx.recipe.epochs
        rows: list[dict] = []
        best: _Search | None = None
        for i, (name, method, params) in enumerate(candidates):
            ctx.note(f"cross-validation: {name} ({i + 1}/{len(candidates)})")
            progress = offset_progress(ctx.progress, i * epochs, len(candidates) * epochs, candidate=name)
            own = replace(ctx, model=copy.deepcopy(ctx.model), params=params, progress=progress)
            chosen, result = method.run(own)
            rows.append({"name": name, "val_acc": final_val_acc(result), "best_val_acc": result.best_val_acc,
                         "test_acc": result.test_acc, "best_val_test_acc": result.best_val_test_acc,
                         "best_val_epoch": result.best_val_epoch})
            if best is None or rows[-1]["val_acc"] > final_val_acc(best.result):
                best = _Search(LayerWeights([], list(chosen.weights), {"chosen": name}), result, own.model.state_dict())
        owner = block_of_layers(ctx.layers, partition(ctx.model, "block"))
        best.chosen.scores = [rows[o]["val_acc"] for o in owner]
        best.chosen.extras["candidates"] = rows
        return best
