"""Surprise difference: how much surprise a layer adds on top of the layer before it.

Formula: s*_l = max(0, s_l − s_{l−1}), s_0 := 0 (so s*_1 = s_1), alpha_l = s*_l / max_k s*_k, with
s_l the Layerwise Surprise of `surprise` (same parameters, hook points and histograms).
Source: the project's seed, which prints min(0, s_l − s_{l−1}); that is never positive and so cannot
serve as a learning-rate weight, hence the max: a layer is tuned in proportion to the surprise it
introduces, not the surprise it inherits from the layers below.
Choices: "previous layer" is the previous entry of the partition (input -> output in registration
order; a projection shortcut follows its block's main path); all-zero differences (surprise never
growing) fall back to all ones; the raw surprise is kept in extras["surprise"].
"""
from __future__ import annotations

from ._activations import SURPRISE_PARAMS, context_surprise, weights_or_ones
from .base import LayerWeights, Method, MethodContext


def surprise_increase(surprise: list[float]) -> list[float]:
    """max(0, s_l − s_{l−1}) with s_0 = 0."""
    return [max(0.0, s - prev) for prev, s in zip([0.0, *surprise[:-1]], surprise)]


class SurpriseDifference(Method):
    """Surprise difference (AutoFT Explorer seed, sign fixed): multiplier ∝ max(0, s_l − s_{l−1})."""

    name = "surprise-diff"
    summary = "Surprise difference: per-layer increase of Layerwise Surprise, max(0, s_l − s_{l−1})."
    params = SURPRISE_PARAMS
    order = 31

    def weights(self, ctx: MethodContext) -> LayerWeights:
        surprise = context_surprise(ctx)
        scores = surprise_increase(surprise)
        weights, fallback = weights_or_ones(scores)
        return LayerWeights(scores=scores, weights=weights,
                            extras={"surprise": surprise, "all_zero_fallback": fallback})
