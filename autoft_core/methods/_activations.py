"""Shared helpers of the surprise methods: where a layer's output is read, per-unit histograms, and KL.

Where a layer's output is read (`output_points`), generically from a `Layer`:
- the *output module* is the outermost module that contains the layer's last parameterised module and
  whose parameters all belong to the layer: for a conv layer its BatchNorm (or the whole `stem`
  Sequential conv-bn-relu), for a projection shortcut the shortcut Sequential, for a block (block
  granularity) the block itself (a BasicBlock, a stage, WRN's final `bn1`), for the head the Linear;
- a leaf output module (Conv / Linear / BatchNorm) gives the pre-activation, so ReLU is applied to it:
  the layer's own nonlinearity in every supported net (digits ResNet, WRN-28-10, ResNet-50);
- a container's output is taken as it is: it already ends in its activation (the stem's ReLU, a
  post-activation block's final ReLU), or it has none of its own (a shortcut's BatchNorm output, a
  pre-activation WRN block's residual sum, which the next block normalises and activates itself);
- the last layer's output is the logits, never rectified.
Outputs are histogrammed inside the forward hook, before the net's in-place ReLUs (WRN, torchvision)
overwrite the tensor, and one layer's activations at a time are held, so large nets fit in memory.

Histograms: per unit, `bins` equal-width bins over the unit's *source* range [min, max]; values
outside it (target only) go to the end bins. A unit that is constant on the source (a dead ReLU) gets
a zero-width range: values equal to the constant land in the first bin, any other in an end bin. Bin
indices are computed for all units at once and counted with one `bincount` (no loop over units).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..layers import Layer
from ._common import normalise_by_max, restored
from .base import MethodContext, Param

UNITS = ("channel", "flat")
CHUNK = 128  # images per forward pass: bounds the one layer's activations held at a time

SURPRISE_PARAMS = {
    "samples": Param(512, "source and target images each, seeded (0 or all: all)", minimum=0, all_means=0),
    "bins": Param(8, "equal-width bins over each unit's source range", minimum=2, maximum=1024),
    "pseudocount": Param(1e-3, "probability added to every bin, then renormalised (no empty-bin infinities)",
                         minimum=1e-12, maximum=1.0),
    "unit": Param("channel", "channel: one distribution per channel, positions pooled; "
                             "flat: one per C×H×W value", choices=UNITS),
}

Update = Callable[[int, torch.Tensor], None]


def output_points(model: nn.Module, layers: Sequence[Layer]) -> list[tuple[nn.Module, bool]]:
    """Each layer's output module and whether ReLU must be applied to its output (see module doc)."""
    points = []
    for i, layer in enumerate(layers):
        module = model.get_submodule(_output_module_name(model, layer))
        is_leaf = next(module.children(), None) is None
        points.append((module, is_leaf and i < len(layers) - 1))
    return points


def _output_module_name(model: nn.Module, layer: Layer) -> str:
    """The outermost ancestor of the layer's last module whose parameters all belong to the layer."""
    own = set(layer.param_names)
    best = layer.module_names[-1]
    parts = best.split(".")
    for depth in range(len(parts) - 1, -1, -1):
        candidate = ".".join(parts[:depth])
        prefix = f"{candidate}." if candidate else ""
        names = [prefix + n for n, _ in model.get_submodule(candidate).named_parameters()]
        if not set(names) <= own:
            break
        best = candidate
    return best


def unit_values(x: torch.Tensor, unit: str) -> torch.Tensor:
    """(N, C, *spatial), (N, tokens, C) (a Transformer's) or (N, K) -> (N, U, P): U units, each with P
    values per example; a channel's values are its positions, or its tokens."""
    if unit == "flat" or x.dim() == 2:
        return x.flatten(1).unsqueeze(-1)
    if x.dim() == 3:
        return x.transpose(1, 2)
    return x.flatten(2)


def bin_counts(values: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bins: int) -> torch.Tensor:
    """Counts (U, bins) of `values` (N, U, P) in equal-width bins of [lo_u, hi_u]; outside -> end bins."""
    n_units = values.shape[1]
    width = hi - lo
    width = torch.where(width > 0, width, torch.full_like(width, torch.finfo(width.dtype).tiny))
    position = (values - lo.view(1, -1, 1)) / width.view(1, -1, 1) * bins
    index = position.floor_().clamp_(0, bins - 1).long()
    index += torch.arange(n_units, device=values.device).view(1, -1, 1) * bins
    return torch.bincount(index.flatten(), minlength=n_units * bins).view(n_units, bins)


def kl_divergence(target_counts: torch.Tensor, source_counts: torch.Tensor, pseudocount: float) -> torch.Tensor:
    """KL(P_tgt ‖ P_src) per unit (float64), each histogram smoothed by `pseudocount` per bin."""
    p, q = _smoothed(target_counts, pseudocount), _smoothed(source_counts, pseudocount)
    return (p * (p / q).log()).sum(-1)


def _smoothed(counts: torch.Tensor, pseudocount: float) -> torch.Tensor:
    probs = counts.double() / counts.sum(-1, keepdim=True)
    return (probs + pseudocount) / (1.0 + counts.shape[-1] * pseudocount)


def layerwise_surprise(model: nn.Module, layers: Sequence[Layer], source_x: torch.Tensor, target_x: torch.Tensor,
                       bins: int = 8, pseudocount: float = 1e-3, unit: str = "channel") -> list[float]:
    """s_l = Σ_units KL(P_tgt ‖ P_src) of each layer's output; eval mode, no_grad, model left as given."""
    n = len(layers)
    lo: list[torch.Tensor | None] = [None] * n
    hi: list[torch.Tensor | None] = [None] * n
    source: list[torch.Tensor | int] = [0] * n
    target: list[torch.Tensor | int] = [0] * n

    def observe_range(i: int, v: torch.Tensor) -> None:
        low, high = v.amin(dim=(0, 2)), v.amax(dim=(0, 2))
        lo[i] = low if lo[i] is None else torch.minimum(lo[i], low)
        hi[i] = high if hi[i] is None else torch.maximum(hi[i], high)

    def count_into(counts: list) -> Update:
        def update(i: int, v: torch.Tensor) -> None:
            counts[i] = counts[i] + bin_counts(v, lo[i], hi[i], bins)
        return update

    with restored(model):
        model.eval()
        points = output_points(model, layers)
        _stream(model, points, source_x, unit, observe_range)
        _stream(model, points, source_x, unit, count_into(source))
        _stream(model, points, target_x, unit, count_into(target))
    return [float(kl_divergence(t, s, pseudocount).sum()) for t, s in zip(target, source)]


def _stream(model: nn.Module, points: list[tuple[nn.Module, bool]], x: torch.Tensor, unit: str,
            update: Update) -> None:
    """Forward `x` in chunks, handing each layer's (rectified) output as unit values to `update`."""
    def hook_for(i: int, relu: bool) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            update(i, unit_values(output.relu() if relu else output, unit))
        return hook

    handles = [module.register_forward_hook(hook_for(i, relu)) for i, (module, relu) in enumerate(points)]
    try:
        with torch.no_grad():
            for start in range(0, len(x), CHUNK):
                model(x[start:start + CHUNK])
    finally:
        for handle in handles:
            handle.remove()


def seeded_sample(x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """`n` rows of `x` drawn without replacement by `seed` (all rows, permuted, when n is 0 or too big)."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)).to(x.device)
    return x[order[:n] if n > 0 else order]


def context_surprise(ctx: MethodContext) -> list[float]:
    """Layerwise surprise of the target train split against the source sample, with ctx's parameters."""
    p = ctx.params
    seed = ctx.seed
    ctx.note("surprise: histogramming source and target activations")
    return layerwise_surprise(ctx.model, ctx.layers, seeded_sample(ctx.data.source.x, p["samples"], seed),
                              seeded_sample(ctx.data.train.x, p["samples"], seed),
                              bins=p["bins"], pseudocount=p["pseudocount"], unit=p["unit"])


def weights_or_ones(scores: Sequence[float]) -> tuple[list[float], bool]:
    """Multipliers normalised by the max, or all ones when every score is zero (then True).

    All-zero scores mean no layer stands out (no shift seen, or no gradient signal): rather than
    freezing the whole net, every layer is tuned at the base rate, i.e. full fine-tuning.
    """
    weights = normalise_by_max(scores)
    if max(weights, default=0.0) > 0:
        return weights, False
    return [1.0] * len(weights), True
