"""LP-FT (Kumar et al., ICLR 2022, "Fine-Tuning can Distort Pretrained Features and Underperform
Out-of-Distribution"): linear-probe the head first, then fine-tune every layer from there.

    phase "lp": alpha = (0, ..., 0, 1) for `lp_epochs` epochs at lr `lp_lr`,
    phase "ft": alpha = (1, ..., 1) for the run's epochs at the run's lr.

Choices the paper leaves open (it fits the probe by L-BFGS logistic regression to convergence):
- the probe is fitted by the run's optimizer for `lp_epochs` (default 5) epochs at `lp_lr`, by
  default 10x the run's base lr, at most 1e6 (0 means that default): only the head moves, so it can
  take larger steps; BatchNorm statistics stay frozen during the probe (the features are fixed);
- the "head" is the last layer of the run's partition, as for `linear-probe`;
- reported: the original model's zero-shot accuracy, the final test accuracy, the best-validation
  epoch over both phases (numbered 1..lp_epochs, then on; ties keep the earlier), per-layer change
  against the weights before the probe, and the combined history, each epoch tagged with its phase.
"""
from __future__ import annotations

from dataclasses import replace

from ..evaluation import flat_layer_params, param_change
from ..core.recipe import Recipe, bounds
from ..finetune import FinetuneResult, finetune
from ._probes import offset_progress
from .base import LayerWeights, Method, MethodContext, Param

LP_LR_FACTOR = 10.0


def _head_only(n_layers: int) -> list[float]:
    return [0.0] * (n_layers - 1) + [1.0]


class LinearProbeThenFineTune(Method):
    """LP-FT (Kumar et al. 2022): a linear probe of the head, then full fine-tuning."""

    name = "lp-ft"
    summary = "LP-FT (Kumar et al. 2022): train the head alone first, then fine-tune all layers."
    order = 2
    params = {
        "lp_epochs": Param(5, "epochs of the linear-probe phase (head only)", minimum=0, maximum=10_000),
        "lp_lr": Param(0.0, f"learning rate of the linear-probe phase (0: {LP_LR_FACTOR:g}x the run's lr)",
                       minimum=0.0, maximum=10.0),
    }

    def _lp_config(self, ctx: MethodContext) -> Recipe:
        """The run's recipe with the probe's epochs and lr, BatchNorm statistics frozen."""
        epochs, lr = ctx.params["lp_epochs"], ctx.params["lp_lr"]
        return replace(ctx.recipe, epochs=epochs, lr=lr or min(LP_LR_FACTOR * ctx.recipe.lr, bounds("lr").maximum),
                       train_bn_stats=False)

    def weights(self, ctx: MethodContext) -> LayerWeights:
        lp = self._lp_config(ctx)
        ones = [1.0] * len(ctx.layers)
        return LayerWeights(scores=list(ones), weights=ones,
                            extras={"lp": {"epochs": lp.epochs, "lr": lp.lr, "weights": _head_only(len(ctx.layers))}})

    def run(self, ctx: MethodContext) -> tuple[LayerWeights, FinetuneResult]:
        chosen = self.weights(ctx)
        lp, ft = self._lp_config(ctx), ctx.recipe
        total = lp.epochs + ft.epochs
        initial = [t.clone() for t in flat_layer_params(ctx.model, ctx.layers)]
        ctx.note("lp-ft: linear probe")
        probe = finetune(ctx.model, ctx.layers, _head_only(len(ctx.layers)), ctx.data, lp, ctx.seed, ctx.device, None,
                         offset_progress(ctx.progress, 0, total, phase="lp"))
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
                          status=tuned.status,
                          diverged_epoch=None if tuned.diverged_epoch is None else tuned.diverged_epoch + offset)
