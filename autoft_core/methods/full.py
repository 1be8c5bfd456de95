"""Full fine-tuning: every layer at the base learning rate (alpha_l = 1; the seed paper's Sec. 4.1, "all
layers are weighted equally", its Table 1 baseline)."""
from __future__ import annotations

from .base import LayerWeights, Method, MethodContext


class FullFineTuning(Method):
    """Full fine-tuning, the baseline every table compares with: every layer at the base learning rate."""

    name = "full"
    summary = "Full fine-tuning: every multiplier 1."
    order = 0

    def weights(self, ctx: MethodContext) -> LayerWeights:
        ones = [1.0] * len(ctx.layers)
        return LayerWeights(scores=ones, weights=list(ones))
