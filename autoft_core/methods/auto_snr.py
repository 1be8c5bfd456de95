"""Auto-SNR: layers whose gradients agree across target examples get the larger learning rate.

Formula: for each scalar parameter j, SNR_j = mean_i(g_ij)² / (var_i(g_ij) + eps), g_ij the gradient of
example i's cross-entropy loss; score_l = mean of SNR_j over all scalar parameters of layer l;
alpha_l = score_l / max_k score_k (in [0, 1]; `scale` = max, Lee et al.'s normalisation).
Source: Lee et al., "Surgical Fine-Tuning Improves Adaptation to Distribution Shifts", ICLR 2023,
Sec. 5 (https://arxiv.org/abs/2210.11466). The seed paper names Auto-SNR among prior work (Sec. 2)
but neither evaluates it nor puts it in Table 1; it is offered here beside its methods.
Choices the paper leaves open, or where this differs:
- gradients per example with torch.func (`vmap(grad(functional_call))`), the model in eval mode so
  BatchNorm uses (and keeps) its running statistics; full fp32, no autocast (no TF32 on CUDA);
- `samples` = 128 target train examples (all when fewer), drawn with the run's seed; vmap runs in
  chunks of at most 64 examples and ~2^28 gradient values (1 GiB fp32); moments accumulate in float64;
- variance unbiased (n − 1), so at least 2 examples; eps = 1e-20 in the denominator: far below the
  smallest gradient variance on digits (~1e-8), so it only guards exact zeros (a parameter whose
  gradient is zero for every example scores 0) and does not bias the ratio;
- a layer's SNR is the mean over every scalar of its parameters (conv/linear weights and BatchNorm
  affine alike);
- the paper freezes layers whose normalised SNR falls below a tuned threshold; here, as a multiplier
  method, the normalised SNR is alpha_l itself (no threshold); `scale` default `max`, measured on
  digits (test accuracy %, seeds 0-2): label flip max 86.5 / raw 6.7 / mean 87.7 (full 85.7), frost 5
  with 100 shots max 92.5 / raw 91.8 / mean 91.5 (full 92.1): max and mean are within noise, raw
  fails on the flip; max is Lee et al.'s;
- all-zero scores (no gradient anywhere) fall back to all ones.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ..errors import BadArgumentError
from ..layers import Layer
from ._common import full_precision, probe_mode, seeded_sample
from ._scale import scale_param, scaled
from .base import LayerWeights, Method, MethodContext, Param

GRADIENT_BUDGET = 2 ** 28  # per-example gradient values held at once (1 GiB in fp32)
MAX_CHUNK = 64


def gradient_moments(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[dict, dict]:
    """Σ_i g_i and Σ_i g_i² (float64) per parameter over the examples, by chunked vmap; model as given."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def loss(p: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(logits, yi.unsqueeze(0))

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))
    n_values = sum(p.numel() for p in params.values())
    chunk = max(1, min(MAX_CHUNK, GRADIENT_BUDGET // n_values))
    first = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params.items()}
    second = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params.items()}
    for start in range(0, len(x), chunk):
        grads = per_example(params, x[start:start + chunk], y[start:start + chunk])
        for name, g in grads.items():
            g = g.double()
            first[name] += g.sum(0)
            second[name] += g.square().sum(0)
    return first, second


def gradient_snr(model: nn.Module, layers: Sequence[Layer], x: torch.Tensor, y: torch.Tensor,
                 eps: float = 1e-20) -> list[float]:
    """Per layer, the mean over its scalar parameters of mean(g)² / (var(g) + eps), in eval mode."""
    n = len(x)
    if n < 2:
        raise BadArgumentError("number of examples for Auto-SNR", n, "at least 2")
    with probe_mode(model), full_precision():
        first, second = gradient_moments(model, x, y)
    scores = []
    for layer in layers:
        total, count = 0.0, 0
        for name in layer.param_names:
            mean = first[name] / n
            var = ((second[name] - n * mean.square()) / (n - 1)).clamp_min(0.0)
            total += float((mean.square() / (var + eps)).sum())
            count += mean.numel()
        scores.append(total / count)
    return scores


class AutoSNR(Method):
    """Auto-SNR of Lee et al. (2023): multiplier ∝ per-layer mean gradient signal-to-noise ratio."""

    name = "auto-snr"
    summary = "Auto-SNR (Lee et al. 2023): per-layer mean E[g]²/Var[g] of per-example gradients."
    params = {
        "samples": Param(128, "target training examples for the per-example gradients, seeded (0 or all: all)",
                         minimum=0, all_means=0),
        "eps": Param(1e-20, "added to each gradient variance", minimum=0.0),
        "scale": scale_param("max"),
    }
    order = 40

    def weights(self, ctx: MethodContext) -> LayerWeights:
        p = self.resolve_params(ctx.params)
        sample = seeded_sample(ctx.data.train, p["samples"], ctx.seed)
        ctx.note("auto-snr: per-example gradients")
        scores = gradient_snr(ctx.model, ctx.layers, sample.x, sample.y, p["eps"])
        weights, fallback = scaled(scores, p["scale"], self.name)
        return LayerWeights(scores=scores, weights=weights, extras={"all_zero_fallback": fallback})
