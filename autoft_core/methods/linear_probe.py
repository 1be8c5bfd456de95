"""Linear probing: only the last layer (the classifier head) is trained. Not a method of the seed paper
(its Table 1 has none): the usual reference point for how far a new head alone goes (Kumar et al., ICLR 2022)."""
from __future__ import annotations

from .base import LayerWeights, Method, MethodContext


class LinearProbe(Method):
    """Linear probing: the head alone trains (multiplier 1), every other layer frozen."""

    name = "linear-probe"
    summary = "Linear probe: only the head is trained (multiplier 1 on the last layer, 0 elsewhere)."
    order = 1

    def weights(self, ctx: MethodContext) -> LayerWeights:
        weights = [0.0] * (len(ctx.layers) - 1) + [1.0]
        return LayerWeights(scores=list(weights), weights=weights)
