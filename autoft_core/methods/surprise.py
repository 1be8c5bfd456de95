"""Layerwise Surprise: how surprised each layer is by the target data, as its learning-rate multiplier.

Formula (the seed paper, Sec. 4.3, eq. 1, adapted from Eastwood et al. 2022): with π_i^{k,src},
π_i^{k,tgt} the 8-bin histograms of dimension k of layer l's flattened post-activation output on
source and target samples, s_l = Σ_k Σ_i π_i^{k,tgt} log(π_i^{k,tgt} / π_i^{k,src}); multipliers by
`scale` (default `mean`: s_l / mean_k s_k). Rationale: a layer whose outputs are distributed
differently on the target than on the source is where the shift shows, so it is tuned the most.

Choices (the paper left them open; `_activations` has the details):
- read point: the layer's post-activation output; a residual block's last main-path conv is read
  after the residual add; the head gives the logits;
- data: `samples` source images (ctx.data.source) and as many target train images (ctx.data.train),
  default 512 each (all there are when fewer), drawn with the run's seed; eval mode, no_grad;
- defaults: `unit` = flat (per dimension, as the paper), `reduce` = sum (eq. 1), `bins` = 8 over each
  unit's source range (target values outside clamped into the edge bins), `pseudocount` ε = 1e-3;
- extras["noise_floor"] (per layer): the same statistic between the two halves of the source sample;
  a score within a small multiple of it is sampling noise. Digits, seeds 0-2, 2026-11-26: label flip
  (images unshifted) score / floor 0.43-0.55 in every conv layer, 0.58-0.68 at the head;
  gaussian_noise severity 5: the stem 514-523 (9-11x its floor), but the first block's output larger
  (stage1.conv2 1331-1372, 25-27x), and the largest score is never the stem's. The paper found the
  same (Sec. 6.2.1: "Counter to our expectations, Layerwise Surprise gives higher weight to the later
  layers of the network"); the binnings tried are in README (Methods);
- `scale` default `mean`, measured on digits (test accuracy %, seeds 0-2): label flip max 77.0 /
  raw 10.4 / mean 82.9 (full 85.7), frost 5 with 100 shots max 92.5 / raw 10.1 / mean 93.7 (full
  92.1): raw KL sums (tens to ~1000) blow the learning rate up, mean beats max on both;
- all-zero scores (identical data) fall back to all ones.
"""
from __future__ import annotations

from ._activations import SURPRISE_PARAMS, context_surprise
from ._common import per_layer
from ._scale import scale_param, scaled
from .base import LayerWeights, Method, MethodContext


class LayerwiseSurprise(Method):
    """Layerwise Surprise (the seed paper): multiplier from Σ_units KL(target ‖ source) of 8-bin histograms."""

    name = "surprise"
    summary = "Layerwise Surprise: per-layer Σ_dims KL(target ‖ source) of 8-bin activation histograms."
    params = {**SURPRISE_PARAMS, "scale": scale_param("mean")}
    order = 30

    def weights(self, ctx: MethodContext) -> LayerWeights:
        params = self.resolve_params(ctx.params)
        surprise = context_surprise(ctx, params)
        weights, fallback = scaled(surprise.scores, params["scale"], self.name)
        return LayerWeights(scores=surprise.scores, weights=weights, extras={
            "noise_floor": surprise.noise_floor, "all_zero_fallback": fallback,
            "per_layer": per_layer(ctx.layers, surprise=surprise.scores, noise_floor=surprise.noise_floor)})
