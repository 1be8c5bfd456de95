"""Layerwise Surprise: how surprised each layer is by the target data, as its learning-rate multiplier.

Formula: s_l = Σ_{units u of layer l} KL(P_tgt,u ‖ P_src,u), alpha_l = s_l / max_k s_k.
Source: the project's seed method (AutoFT Explorer's Layerwise Surprise script). Rationale: a layer whose
outputs are distributed differently on the target than on the source is where the shift shows, so it
is tuned the most.

Choices (the seed left them open; see `_activations` for the details):
- hook point: the layer's post-activation output: its output module (a conv layer's BatchNorm, a
  block, the head) with ReLU applied to leaf outputs; the head gives the logits;
- data: `samples` source images (ctx.data.source) and as many target train images (ctx.data.train),
  default 512 each (all there are when fewer), drawn with the run's seed; model in eval mode, no_grad;
- unit: "channel" (default) pools each channel over positions (every position a sample of the
  channel's distribution); "flat" makes every C×H×W value a unit, as the seed does;
- histograms: `bins` = 8 equal-width bins over the unit's source range [min, max], values outside
  going to the end bins; `pseudocount` = 1e-3 probability added to every bin and renormalised;
- multipliers: normalised by the max; all-zero scores (identical data) fall back to all ones.
"""
from __future__ import annotations

from ._activations import SURPRISE_PARAMS, context_surprise, weights_or_ones
from .base import LayerWeights, Method, MethodContext


class LayerwiseSurprise(Method):
    """Layerwise Surprise (AutoFT Explorer's seed method): multiplier ∝ Σ_units KL(target ‖ source)."""

    name = "surprise"
    summary = "Layerwise Surprise: per-layer Σ_units KL(target ‖ source) of activation histograms."
    params = SURPRISE_PARAMS
    order = 30

    def weights(self, ctx: MethodContext) -> LayerWeights:
        scores = context_surprise(ctx)
        weights, fallback = weights_or_ones(scores)
        return LayerWeights(scores=scores, weights=weights, extras={"all_zero_fallback": fallback})
