"""Auto-RGN with a Newton step: the relative norm of the L-BFGS-preconditioned gradient H⁻¹g.

Formula: score_l = ‖H_l⁻¹ g_l‖₂ / ‖θ_l‖₂, alpha_l = score_l / max_k score_k, with g_l the target-train
gradient of layer l (as in Auto-RGN, Lee et al., 2023, ICLR) and H_l⁻¹ the L-BFGS inverse-Hessian
approximation of that layer's diagonal block (Nocedal & Wright, "Numerical Optimization", ch. 7):
the size of the Newton step each layer would take, relative to its weights, rather than the slope.

Choices made here (the method has no paper of its own beyond this formula):
- curvature pairs: m = `pairs` (default 5) per layer, from m L-BFGS iterations on the local quadratic
  model of the target loss at the pretrained weights θ₀: each probes s_l = `step`·‖θ_l‖·d_l/‖d_l‖
  (default 1 %) along the current L-BFGS direction d_l = −H_l g_l (the first along −g_l), measures
  y_l = g_l(θ₀ + s) − g_l(θ₀) (a forward-difference Hessian-vector product) and takes the exact
  line-search step on the model; on a quadratic these directions are conjugate, so H_l is exact after
  dim iterations. All probes start at θ₀, use the same fixed minibatches (`batches` × `batch_size`,
  default 2 × 64, target train split, eval mode), and the weights are restored bit for bit after;
- block-diagonal H: one L-BFGS memory per layer; all layers are probed together (one gradient per
  pair), so y_l also carries the off-diagonal blocks' response, as in layer-wise quasi-Newton practice;
- damping: none; a pair is skipped unless sᵀy > 0.05·‖s‖‖y‖ (clearly positive curvature along s),
  and that layer stops probing (its next probe would repeat the same direction); a layer whose first
  probe already fails gets H₀ = γI with γ = ‖s‖/‖y‖, the inverse of the Hessian's gain along −g;
- scaling: H₀ = γI with γ = sᵀy / yᵀy of the newest kept pair (N&W eq. 7.20), two-loop recursion
  (N&W Alg. 7.4);
- recomputation: `every` = "once" by default (each rescoring costs m + 1 gradient evaluations), or
  "epoch" / "step" as for Auto-RGN; all-zero scores give all multipliers 1.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..layers import Layer
from ._gradients import Probe, RelativeNormMethod, lbfgs_params, newton_steps, rgn_params


class AutoRGNHessian(RelativeNormMethod):
    """Auto-RGN on the per-layer L-BFGS Newton step: multipliers ∝ ‖H_l⁻¹g_l‖/‖θ_l‖."""

    name = "auto-rgn+hessian"
    summary = "Auto-RGN on the L-BFGS Newton step: alpha_l ∝ ‖H_l⁻¹ g_l‖ / ‖θ_l‖ (block-diagonal H, target data)."
    params = {**rgn_params(every="once", batches=2), **lbfgs_params()}
    order = 21

    def _vectors(self, model: nn.Module, layers: Sequence[Layer], probe: Probe,
                params: dict[str, Any]) -> tuple[list[torch.Tensor], dict[str, Any]]:
        newton = newton_steps(model, layers, probe.target, params["pairs"], params["step"])
        return newton.steps, {"grad_norm": [float(torch.linalg.vector_norm(g)) for g in newton.grads],
                              "pairs_used": newton.pairs_used}
