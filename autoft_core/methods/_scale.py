"""How a scoring method's raw per-layer scores become learning-rate multipliers alpha_l (`scale`).

- `max`: alpha_l = s_l / max_k s_k, the top layer at the base learning rate (Lee et al. 2023's Auto-RGN);
- `raw`: alpha_l = s_l, i.e. lr_l = base lr × s_l (the seed paper's Algorithm 1, alpha_l = w_l · alpha);
- `mean`: alpha_l = s_l / mean_k s_k, the same total learning-rate budget Σ_l alpha_l = L as full
  fine-tuning, shared out in proportion to the scores (a layer with a typical score keeps the base lr,
  one standing out alone can get up to L times it).

Negative scores count as 0 (no negative learning rates). All-zero scores (no signal anywhere) give
every multiplier 1, i.e. full fine-tuning, whatever the scale; a non-finite score is an error.
Defaults (each method's docstring gives the measurements behind its own): `max` for the gradient
methods (auto-rgn, auto-rgn+change, auto-snr: Lee et al.'s choice, as good as or better than `mean`
on digits), `mean` for the Newton-step, surprise and criticality methods, whose scores are dominated
by one layer or spread over a wide range, so that `max` starves the other layers (auto-rgn+hessian with
the Gauss-Newton block, on the digits label flip of an earlier digits data set: 21.7 % with max, 93.3 %
with mean, full fine-tuning 85.7 %; not measured again with the exact Hessian, the default since) and
`raw` depends on the scores' units (surprise: about 10 % on both digits tasks).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import NonFiniteError
from .base import Param

SCALES = ("max", "raw", "mean")


def scale_param(default: str) -> Param:
    """The `scale` hyper-parameter with a method's default."""
    return Param(default, "scores -> multipliers: max (top layer 1, Lee et al.), raw (alpha = score, "
                          "Algorithm 1), mean (mean multiplier 1)", SCALES)


def scaled(scores: Sequence[float], scale: str, method: str) -> tuple[list[float], bool]:
    """(multipliers, whether the all-zero fallback to all ones was taken) for `scores` under `scale`."""
    values = torch.as_tensor(list(scores), dtype=torch.float64)
    if not bool(torch.isfinite(values).all()):
        raise NonFiniteError(f"{method}: a layer's score is infinite or NaN: the loss or its gradient overflowed "
                             "(the model's weights or the data hold very large values; during fine-tuning this "
                             "means the run diverged: lower --lr)")
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
    return scaled_tensor(values, scale).tolist(), not bool((values > 0).any())


def scaled_tensor(scores: torch.Tensor, scale: str) -> torch.Tensor:
    """The multipliers of finite float64 `scores` under `scale`, computed where they lie (no host read, so a
    CUDA step need not wait for its scores): the same numbers as `scaled`, the all-zero fallback included."""
    values = scores.clamp_min(0.0)
    # the chosen divisor alone: auto-rgn runs this every training step
    divisor = {"max": torch.amax, "mean": torch.mean, "raw": lambda v: v.new_ones(())}[scale](values)
    return torch.where((values > 0).any(), values / divisor, torch.ones_like(values))
