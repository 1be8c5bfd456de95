"""Auto-RGN (Lee et al., 2023, "Surgical Fine-Tuning Improves Adaptation to Distribution Shifts", ICLR);
the seed paper's Sec. 4.2 (the formula) and Sec. 4.1 ("at each fine-tuning step").

Formula: score_l = RGN_l = ‖∇θ_l L(f, D_tgt)‖₂ / ‖θ_l‖₂; alpha_l = RGN_l / max_k RGN_k (`scale` = max,
Lee et al.'s normalisation: the layer with the largest relative gradient norm trains at the base
learning rate, the others proportionally slower); Lee et al. recompute the multipliers during
fine-tuning.

Choices the paper leaves open (or that differ from it), made here:
- unit: one score per layer of the project's partition (Lee et al. score each parameter tensor);
- gradient, for `weights` and `every=epoch`: of the mean cross-entropy on the target *train* split over
  a seeded probe sample of `batches` × `batch_size` examples (defaults 4 × 64; `batches=all`: the whole
  split, exact), in one fp32 pass without autocast, model in eval mode (BatchNorm statistics frozen);
- recomputation: `every` = "step" (default): each update's multipliers from that update's own training
  gradient, as the seed paper states ("at each fine-tuning step"); it costs no extra pass and no host
  read (`GradientReweighter`: the multipliers stay a tensor on the model's device). That gradient is the
  training step's own: of the recipe's minibatch (translated when `translate` > 0), in the model's
  training mode, and on CUDA under the run's bf16 autocast, so not the fp32 probe gradient above.
  `weights` (what the method is shown to pick) still scores the pretrained model on the probe sample.
  "epoch" (epoch k rescores on the probe with seed + k − 1, the first epoch taking `weights`; the default
  until 2026-11-26) or "once". Measured on digits (test accuracy %, seeds
  0-2, input = mean of the 14 corruptions at severity 5 / feature level / label flip): step
  78.5 ± 0.8 / 60.3 ± 1.1 / 27.2 ± 4.9 (on the CPU, by the earlier implementation: scored on the coming
  minibatch in eval mode, in fp32, the same gradient as training's there, BatchNorm statistics frozen),
  epoch 77.7 ± 1.6 / 62.5 ± 4.1 / 19.0 ± 3.4;
  whole run against full fine-tuning's (`bench/methods.py`): with `step` 1.14x [0.85-1.25] on the CPU
  (one thread, 7 repeats, 2026-11-26); with `epoch` 1.19-1.27x on the CPU and 1.80x on an H200;
- `scale` (see `_scale`): default `max`, Lee et al.'s choice. Measured on digits (test accuracy %,
  seeds 0-2, `bench/method_checks.py scales`): label flip max 83.7 / raw 46.1 / mean 83.3 (full 85.7),
  frost 5 with 100 shots max 94.1 / raw 16.9 / mean 92.5 (full 92.1): raw relative gradient norms
  (~1e-3..1) all but freeze the net, max is as good as mean on the flip and better on frost;
- all-zero scores (a stationary point) give all multipliers 1, i.e. full fine-tuning.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..layers import Layer
from ._common import per_layer
from ._gradients import Probe, RelativeNormMethod, layer_gradients, norms, rgn_params


class AutoRGN(RelativeNormMethod):
    """Lee et al.'s (2023) Auto-RGN: multipliers proportional to the relative gradient norm ‖g_l‖/‖θ_l‖."""

    name = "auto-rgn"
    summary = "Auto-RGN (Lee et al. 2023): alpha_l ∝ ‖∇θ_l L_tgt‖ / ‖θ_l‖, recomputed at each step."
    params = rgn_params(every="step", batches=4, scale="max")
    scores_gradient = True
    order = 20

    def _vectors(self, model: nn.Module, layers: Sequence[Layer], probe: Probe,
                 params: dict[str, Any]) -> tuple[list[torch.Tensor], dict[str, Any]]:
        grads = layer_gradients(model, layers, probe.target)
        return grads, {"per_layer": per_layer(layers, grad_norm=norms(grads))}
