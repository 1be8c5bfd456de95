"""Auto-RGN on the change of the damped Newton step between source and target data.

Formula (the seed paper's Algorithm 1, AUTO-RGN+HESSIAN+CHANGE, per layer):

    score_l = ‖(C_tgt,l + λ_tgt,l I)⁻¹ g_tgt,l − (C_src,l + λ_src,l I)⁻¹ g_src,l‖₂ / ‖θ_l‖₂,

each damped Newton step computed as in auto-rgn+hessian (`_curvature`) on its own data: the target
train split, and the source sample with its own labels. Algorithm 1 sets alpha_l = score_l × base lr
(`scale` = raw); `max` is Lee et al.'s normalisation.

Choices made here:
- both probe samples have `batches` × `batch_size` examples (default 1 × 64, as auto-rgn+hessian,
  half the cost of 2 × 64 at the same flip accuracy: 78.2 against 78.1 % with Gauss-Newton, digits
  seeds 0-2, 2026-11-26;
  `all`: whole splits) drawn with the same seed, so equal source and target data give a zero score;
  eval mode, fp32 without autocast, the model left exactly as it was;
- curvature: the exact Hessian block, as auto-rgn+hessian (Gauss-Newton until 2026-11-26). Measured on
  digits at the default recipe (seeds 0-2, 1 x 64 examples; input = mean of the 14 corruptions at
  severity 5 / feature level / label flip): exact 78.0 ± 1.7 / 82.7 ± 0.4 / 80.5 ± 1.6 %, Gauss-Newton
  77.7 ± 1.6 / 80.7 ± 1.8 / 78.2 ± 3.5 %, at 0.81x its weight cost [0.70-0.87] (5 alternated pairs,
  one thread; a Gauss-Newton product takes two backward passes, an exact one one);
- 5 iterations, damping 0.1, as auto-rgn+hessian; `scale` = mean, measured with Gauss-Newton on the
  previous digits data (test accuracy %, seeds 0-2): label flip max 21.7 / raw 92.8 / mean 93.2 (full 85.7),
  frost 5 with 100 shots max 83.4 / raw 83.0 / mean 91.9 (full 92.1); `every` = "once";
- cost: two solves, target and source. The source step depends only on the source model and the seed,
  so the process remembers it (`_gradients.layer_newton_steps`, with the target step +hessian solves
  too) and keeps it on disk (`_steps_on_disk`): a source model pays it once per seed, for the 15
  digits targets that share it, in every process. Weights (`bench/methods.py`, 1 thread, CPU time, 5
  alternated pairs, Intel Xeon, 2026-11-28): 1.44 [1.30-1.67] and 1.34 [1.26-1.47] epochs (two runs) for a
  source model's first target with the curvature products local to each layer (`_local_curvature`; one
  solve 1.63x faster than the double backward), 0.59-0.76 for every later one; 1.79-2.09 before them
  with `_curvature`'s double backward (its own convolution backward, its BatchNorms folded into the
  convolutions), 0.97-1.21 later, in this or a new process (from the kept step); 2.5 / 1.2 with
  PyTorch's backward. Cheaper
  settings measured against the default on digits (2026-11-27, PyTorch's backward; weights 2.69-2.82
  epochs cold; test accuracy %, seeds 0-5 on the feature level / label flip, 0-2 on the input level's
  14 corruptions): `batch_size=32` 1.91 epochs, the same means (83.1 / 79.5 against
  83.1 / 79.4; input 77.6 both) but the flip's seed spread ± 4.5 against ± 1.5 (one seed at 72.2);
  `batch_size=48` 81.7 / 79.2; `iterations=4` 81.8 / 78.5; `iterations=3` 1.98 epochs, the flip
  76.6 against 79.9 (seeds 0-2). The default keeps the steadier estimate;
- all-zero scores (source and target agree) give all multipliers 1;
- extras["per_layer"]: the solver diagnostics of both solves, prefixed target_ / source_.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..layers import Layer
from ._gradients import Probe, RelativeNormMethod, layer_newton_steps, newton_params, newton_table


class AutoRGNHessianChange(RelativeNormMethod):
    """Auto-RGN on s_tgt − s_src, the change of the damped per-layer Newton step."""

    name = "auto-rgn+hessian+change"
    summary = "Auto-RGN on the Newton-step change: alpha_l from ‖s_tgt,l − s_src,l‖ / ‖θ_l‖ (Algorithm 1)."
    params = newton_params()
    order = 23
    uses_source = True

    def _vectors(self, model: nn.Module, layers: Sequence[Layer], probe: Probe,
                 params: dict[str, Any]) -> tuple[list[torch.Tensor], dict[str, Any]]:
        target = layer_newton_steps(model, layers, probe.target, params)
        source = layer_newton_steps(model, layers, probe.source, params, keep_on_disk=probe.untouched)
        table = [{**t, **s} for t, s in zip(newton_table(layers, target, "target_"),
                                            newton_table(layers, source, "source_"))]
        return [t - s for t, s in zip(target.steps, source.steps)], {"per_layer": table}
