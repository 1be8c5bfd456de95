"""Auto-RGN on the change of the Newton step between source and target data.

Formula (Algorithm 1 of the project's seed): score_l = ‖H_tgt,l⁻¹ g_tgt,l − H_src,l⁻¹ g_src,l‖₂ / ‖θ_l‖₂,
alpha_l = score_l / max_k score_k; g and H are the gradient and the L-BFGS inverse-Hessian
approximation (Nocedal & Wright, ch. 7) of layer l's block, each on its own data. It combines the
relative gradient norm of Lee et al. (2023, ICLR) with a Newton step and subtracts what the
source data alone would ask for.

Choices made here (as for auto-rgn+hessian, once per data set):
- L-BFGS pairs are collected separately on the source loss (source sample, source labels) and on the
  target loss (target train split): m = `pairs` (default 5) L-BFGS iterations each on the local
  quadratic model at the pretrained weights θ₀, probing θ₀ + s with ‖s_l‖ = `step`·‖θ_l‖ (default 1 %)
  along the L-BFGS direction, y = g(θ₀ + s) − g(θ₀), exact line search on the model; both on
  `batches` × `batch_size` (default 2 × 64) fixed minibatches drawn with the same seed, so equal source
  and target data give a zero score; the weights are restored bit for bit after each collection;
- block-diagonal H (one memory per layer, all layers probed together); no damping: a pair is
  skipped unless sᵀy > 0.05·‖s‖‖y‖ and that layer stops probing; a layer without any pair uses
  H₀ = γI with γ = ‖s‖/‖y‖ of its first probe;
- H₀ = γI with γ = sᵀy / yᵀy of the newest kept pair (N&W eq. 7.20), two-loop recursion (Alg. 7.4);
- recomputation: `every` = "once" by default (2(m + 1) gradient evaluations each time);
- all-zero scores (source and target agree) give all multipliers 1.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..layers import Layer
from ._gradients import Probe, RelativeNormMethod, lbfgs_params, newton_steps, rgn_params


class AutoRGNHessianChange(RelativeNormMethod):
    """Auto-RGN on H_tgt⁻¹g_tgt − H_src⁻¹g_src: multipliers ∝ the change of the per-layer Newton step."""

    name = "auto-rgn+hessian+change"
    summary = "Auto-RGN on the Newton-step change: alpha_l ∝ ‖H_tgt⁻¹g_tgt − H_src⁻¹g_src‖_l / ‖θ_l‖."
    params = {**rgn_params(every="once", batches=2), **lbfgs_params()}
    order = 23
    uses_source = True

    def _vectors(self, model: nn.Module, layers: Sequence[Layer], probe: Probe,
                params: dict[str, Any]) -> tuple[list[torch.Tensor], dict[str, Any]]:
        target = newton_steps(model, layers, probe.target, params["pairs"], params["step"])
        source = newton_steps(model, layers, probe.source, params["pairs"], params["step"])
        return [t - s for t, s in zip(target.steps, source.steps)], {
            "target_newton_norm": [float(torch.linalg.vector_norm(v)) for v in target.steps],
            "source_newton_norm": [float(torch.linalg.vector_norm(v)) for v in source.steps],
            "target_pairs_used": target.pairs_used, "source_pairs_used": source.pairs_used}
