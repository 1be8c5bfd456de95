"""LP-FT (Kumar et al., ICLR 2022, "Fine-Tuning can Distort Pretrained Features and Underperform
Out-of-Distribution"): linear-probe the head first, then fine-tune every layer from there.

    phase "lp": alpha = (0, ..., 0, 1) for E_lp = floor(`lp_share` × E) epochs at `lp_lr_factor` × lr,
    phase "ft": alpha = (1, ..., 1) for the remaining E − E_lp epochs at the run's lr,

E the run's epochs: the two phases share the recipe's budget, so LP-FT takes exactly as many
optimizer steps as every other method (a fair comparison). Choices the paper leaves open (it fits
the probe by L-BFGS logistic regression to convergence):
- the probe is fitted by the run's optimizer; `lp_share` default 0.5 (half the epochs each; 15 ->
  7 + 8) and `lp_lr_factor` default 10: only the head moves, so it can take larger steps (Kumar et
  al. tune it); BatchNorm statistics stay frozen during the probe (the features are fixed);
- the "head" is the last layer of the run's partition, as for `linear-probe`;
- reported: the original model's zero-shot accuracy, the final test accuracy, the best-validation
  epoch over both phases (numbered 1..E_lp, then on; ties keep the earlier), per-layer change
  against the weights before the probe, and the combined history, each epoch tagged with its phase.
The seed paper uses LP-FT only to make its BREEDS source model (Sec. 5: 2 epochs of LP at lr 0.1, then
3 of FT at 1e-5; `setups/breeds.py` follows it), not as a Table 1 method; these defaults are this
project's, for a target run with one shared epoch budget.
"""
from __future__ import annotations

import math
from dataclasses import replace

from ..evaluation import flat_layer_params, param_change
from ..core.recipe import Recipe, bounds
from ..finetune import FinetuneResult, finetune
from ._probes import offset_progress
from .base import LayerWeights, Method, MethodContext, Param


def _head_only(n_layers: int) -> list[float]:
    return [0.0] * (n_layers - 1) + [1.0]


class LinearProbeThenFineTune(Method):
    """LP-FT (Kumar et al. 2022): a linear probe of the head, then full fine-tuning."""

    name = "lp-ft"
    summary = "LP-FT (Kumar et al. 2022): train the head alone first, then fine-tune all layers."
    order = 2
    params = {
        "lp_share": Param(0.5, "share of the run's epochs spent on the linear probe (rounded down)",
                          minimum=0.0, maximum=1.0),
        "lp_lr_factor": Param(10.0, "the linear probe's learning rate, as a multiple of the run's",
                              minimum=1e-12, maximum=1e6),
    }

    def _phases(self, ctx: MethodContext) -> tuple[Recipe, Recipe]:
        """(probe, fine-tune) recipes: the run's epochs split by `lp_share`; the probe's BatchNorm frozen and
        its lr kept within the recipe's lr bounds (a factor may take it past either end)."""
        params = self.resolve_params(ctx.params)
        run = ctx.recipe
        lp_epochs = math.floor(params["lp_share"] * run.epochs)
        lr = bounds("lr")
        lp_lr = min(max(params["lp_lr_factor"] * run.lr, lr.minimum), lr.maximum)
        return (replace(run, epochs=lp_epochs, lr=lp_lr, train_bn_stats=False),
                replace(run, epochs=run.epochs - lp_epochs))

    def weights(self, ctx: MethodContext) -> LayerWeights:
        lp, ft = self._phases(ctx)
        ones = [1.0] * len(ctx.layers)
        return LayerWeights(scores=list(ones), weights=ones,
                            extras={"lp": {"epochs": lp.epochs, "lr": lp.lr, "weights": _head_only(len(ctx.layers))},
                                    "ft": {"epochs": ft.epochs, "lr": ft.lr}})

    def run(self, ctx: MethodContext) -> tuple[LayerWeights, FinetuneResult]:
        chosen = self.weights(ctx)
        lp, ft = self._phases(ctx)
        total = lp.epochs + ft.epochs
        initial = [t.clone() for t in flat_layer_params(ctx.model, ctx.layers)]
        ctx.note("lp-ft: linear probe")
        probe = finetune(ctx.model, ctx.layers, _head_only(len(ctx.layers)), ctx.data, lp, ctx.seed, ctx.device,
                         None, offset_progress(ctx.progress, 0, total, phase="lp"))
        if probe.status == "diverged":  # no fine-tuning phase on broken weights
            return chosen, probe
        ctx.note("lp-ft: fine-tuning")
        tuned = finetune(ctx.model, ctx.layers, chosen.weights, ctx.data, ft, ctx.seed, ctx.device, None,
                         offset_progress(ctx.progress, lp.epochs, total, phase="ft"))
        return chosen, _combined(probe, tuned, param_change(ctx.model, ctx.layers, initial))


def _combined(probe: FinetuneResult, tuned: FinetuneResult, change: list[float]) -> FinetuneResult:
    """One result for both phases: epochs numbered on from the probe's, best validation over both."""
    offset = len(probe.history)
    history = [{**h, "phase": "lp"} for h in probe.history]
    history += [{**h, "epoch": h["epoch"] + offset, "phase": "ft"} for h in tuned.history]
    if tuned.best_val_acc > probe.best_val_acc:
        best_epoch, best_acc, best_test = tuned.best_val_epoch + offset, tuned.best_val_acc, tuned.best_val_test_acc
    else:
        best_epoch, best_acc, best_test = probe.best_val_epoch, probe.best_val_acc, probe.best_val_test_acc
    return FinetuneResult(zero_shot_acc=probe.zero_shot_acc, test_acc=tuned.test_acc, best_val_epoch=best_epoch,
                          best_val_acc=best_acc, best_val_test_acc=best_test, param_change=change,
                          multipliers=tuned.multipliers, history=history, seconds=probe.seconds + tuned.seconds,
                          status=tuned.status, diverged_epoch=tuned.diverged_epoch and tuned.diverged_epoch + offset,
                          steps=probe.steps + tuned.steps)
