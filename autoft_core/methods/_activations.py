"""Shared helpers of the surprise methods: where a layer's output is read, histograms, KL, noise floor.

Where a layer's output is read (`read_points`), generically from a `Layer`, input -> output:
- a residual block's *last main-path layer* (e.g. a BasicBlock's conv2, a Bottleneck's conv3) is read
  at the block's output: after the residual add (and, in a post-activation block, its final ReLU). A
  residual block is a module with a shortcut branch attribute named `shortcut`, `downsample` or
  `convShortcut` (the digits ResNet, torchvision's ResNets and RobustBench's WRN; the branch may be
  an identity or None); its main path is everything in it but that branch; the layer is its last
  main-path layer when its last module lies on the main path and no later layer starts there;
- otherwise the *output module* is the outermost module that contains the layer's last parameterised
  module and whose parameters all belong to the layer: for a conv layer its BatchNorm (or the whole
  `stem` Sequential conv-bn-relu), for a projection shortcut the shortcut Sequential (the branch's own
  output, before the add), for a block (block granularity) the block itself, for the head the Linear;
- a leaf output module (Conv / Linear / BatchNorm) gives the pre-activation, so ReLU is applied to it
  (the layer's own nonlinearity in every supported net); a container's output is taken as it is;
- the last layer's output is the logits, never rectified.

Histograms (the seed paper's Layerwise Surprise, Sec. 4.3): per unit u, `bins` equal-width bins over
the unit's *source* range [min_u, max_u]; target values outside it are clamped into the edge bins
(below min -> first bin, above max -> last). A unit constant on the source (a dead ReLU) gets a
zero-width range: values equal to the constant land in the first bin, any other in an edge bin.
Units: `flat` (default, the paper's): every dimension of the flattened C×H×W output is a unit;
`channel`: a channel's values at all positions pool into one histogram. Probabilities are smoothed,
p = (counts/n + ε)/(1 + bins·ε) with ε = `pseudocount` (default 1e-3), so an empty source bin gives a
finite KL; KL(P_tgt ‖ P_src) = Σ_i p_i log(p_i / q_i) per unit, then summed over units (`reduce` =
sum, the paper's eq. 1) or averaged (`mean`: unit-averaging, so wide layers do not win by width).

Noise floor: the same statistic between the two disjoint halves of the source sample (second half
as "target", first half as "source", bins over the whole sample's range). With no shift its expected
value is about twice the target statistic's (the plug-in KL's bias grows as 1/n_p + 1/n_q, and each
half has half the examples), so a score below its floor is indistinguishable from sampling noise.

Passes: the source sample goes through the model once; its activations are held (at most
`SOURCE_BUDGET` values, else a range pass and a counting pass stream them), then the target once.
Outputs are read inside forward hooks, before in-place ReLUs (WRN, torchvision) overwrite them.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import AutoFTError
from ..layers import Layer
from ._common import seeded_sample
from .base import MethodContext, Param

UNITS = ("flat", "channel")
REDUCTIONS = ("sum", "mean")
RESIDUAL_BRANCHES = ("shortcut", "downsample", "convShortcut")
CHUNK = 128  # images per forward pass
SOURCE_BUDGET = 2 ** 28  # source activation values held from the one source pass (1 GiB in fp32)

SURPRISE_PARAMS = {
    "samples": Param(512, "source and target images each, seeded (0 or all: all)", minimum=0, all_means=0),
    "bins": Param(8, "equal-width bins over each unit's source range", minimum=2, maximum=1024),
    "pseudocount": Param(1e-3, "epsilon: probability added to every bin, then renormalised", minimum=1e-12),
    "unit": Param("flat", "flat: one histogram per C×H×W dimension (the paper); channel: positions pooled",
                  UNITS),
    "reduce": Param("sum", "sum the per-unit KL over units (the paper) or average it", REDUCTIONS),
}

Update = Callable[[int, torch.Tensor], None]


def read_points(model: nn.Module, layers: Sequence[Layer]) -> list[tuple[nn.Module, bool]]:
    """Each layer's read module and whether ReLU must be applied to its output (see module doc)."""
    points = []
    for i, layer in enumerate(layers):
        block = _closing_block(model, layers, i)
        name = block if block is not None else _output_module_name(model, layer)
        module = model.get_submodule(name)
        is_leaf = next(module.children(), None) is None
        points.append((module, is_leaf and i < len(layers) - 1))
    return points


def _residual_blocks(model: nn.Module, module_name: str) -> Iterator[tuple[str, str]]:
    """(block name, branch name) for each residual block containing `module_name`, innermost first."""
    parts = module_name.split(".")
    for depth in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:depth])
        block = model.get_submodule(name)
        for branch in RESIDUAL_BRANCHES:
            if hasattr(block, branch):
                yield name, f"{name}.{branch}"
                break


def _on_main_path(module_name: str, block: str, branch: str) -> bool:
    return module_name.startswith(block + ".") and not (module_name == branch or module_name.startswith(branch + "."))


def _closing_block(model: nn.Module, layers: Sequence[Layer], index: int) -> str | None:
    """The residual block whose output layer `index` is read at, if it is that block's last main-path layer."""
    last = layers[index].module_names[-1]
    for block, branch in _residual_blocks(model, last):
        if not _on_main_path(last, block, branch):
            return None
        if not any(_on_main_path(layer.module_names[0], block, branch) for layer in layers[index + 1:]):
            return block
        return None
    return None


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
    """Counts (U, bins) of `values` (N, U, P) in equal-width bins of [lo_u, hi_u]; outside -> edge bins."""
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


def _reduced(kl: torch.Tensor, reduce: str) -> float:
    return float(kl.sum() if reduce == "sum" else kl.mean())


@dataclass
class Surprise:
    """Per-layer surprise KL(target ‖ source) and its noise floor KL(source half 2 ‖ source half 1)."""

    scores: list[float]
    noise_floor: list[float]


def layerwise_surprise(model: nn.Module, layers: Sequence[Layer], source_x: torch.Tensor, target_x: torch.Tensor,
                       bins: int = 8, pseudocount: float = 1e-3, unit: str = "flat",
                       reduce: str = "sum") -> Surprise:
    """Layerwise surprise and its noise floor (see module doc); eval mode, no_grad, model left as given."""
    if len(source_x) < 2:
        raise AutoFTError("surprise needs at least 2 source images (its noise floor compares two halves)")
    half = len(source_x) // 2
    with _eval_mode(model):
        points = read_points(model, layers)
        lo, hi, first, second = _source_counts(model, points, source_x, half, unit, bins)
        target = _counts(model, points, target_x, lo, hi, unit, bins)
    scores = [_reduced(kl_divergence(t, a + b, pseudocount), reduce) for t, a, b in zip(target, first, second)]
    floor = [_reduced(kl_divergence(b, a, pseudocount), reduce) for a, b in zip(first, second)]
    return Surprise(scores, floor)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    mode = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(mode)


def _source_counts(model: nn.Module, points: list[tuple[nn.Module, bool]], x: torch.Tensor, half: int, unit: str,
                   bins: int) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """(lo, hi, counts of x[:half], counts of x[half:]) per layer, bins over the range of all of x."""
    sizes: list[int] = [0] * len(points)
    _stream(model, points, x[:1], unit, lambda i, v: sizes.__setitem__(i, v[0].numel()))
    if sum(sizes) * len(x) > SOURCE_BUDGET:  # too large to hold: one pass for the ranges, one to count
        lo, hi = _ranges(model, points, x, unit)
        return (lo, hi, _counts(model, points, x[:half], lo, hi, unit, bins),
                _counts(model, points, x[half:], lo, hi, unit, bins))
    held: list[list[torch.Tensor]] = [[] for _ in points]
    _stream(model, points, x, unit, lambda i, v: held[i].append(v.clone()))
    values = [torch.cat(chunks) for chunks in held]
    lo, hi = [v.amin(dim=(0, 2)) for v in values], [v.amax(dim=(0, 2)) for v in values]
    return (lo, hi, [bin_counts(v[:half], a, b, bins) for v, a, b in zip(values, lo, hi)],
            [bin_counts(v[half:], a, b, bins) for v, a, b in zip(values, lo, hi)])


def _ranges(model: nn.Module, points: list[tuple[nn.Module, bool]], x: torch.Tensor,
            unit: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    lo: list[torch.Tensor | None] = [None] * len(points)
    hi: list[torch.Tensor | None] = [None] * len(points)

    def observe(i: int, v: torch.Tensor) -> None:
        low, high = v.amin(dim=(0, 2)), v.amax(dim=(0, 2))
        lo[i] = low if lo[i] is None else torch.minimum(lo[i], low)
        hi[i] = high if hi[i] is None else torch.maximum(hi[i], high)

    _stream(model, points, x, unit, observe)
    return lo, hi


def _counts(model: nn.Module, points: list[tuple[nn.Module, bool]], x: torch.Tensor, lo: list[torch.Tensor],
            hi: list[torch.Tensor], unit: str, bins: int) -> list[torch.Tensor]:
    counts: list[torch.Tensor | int] = [0] * len(points)

    def count(i: int, v: torch.Tensor) -> None:
        counts[i] = counts[i] + bin_counts(v, lo[i], hi[i], bins)

    _stream(model, points, x, unit, count)
    return counts


def _stream(model: nn.Module, points: list[tuple[nn.Module, bool]], x: torch.Tensor, unit: str,
            update: Update) -> None:
    """Forward `x` in chunks, handing each layer's (rectified) output as unit values to `update`."""
    def hook_for(i: int, relu: bool) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            update(i, unit_values((output.relu() if relu else output).float(), unit))
        return hook

    handles = [module.register_forward_hook(hook_for(i, relu)) for i, (module, relu) in enumerate(points)]
    try:
        with torch.no_grad():
            for start in range(0, len(x), CHUNK):
                model(x[start:start + CHUNK])
    finally:
        for handle in handles:
            handle.remove()


def context_surprise(ctx: MethodContext, params: dict) -> Surprise:
    """Layerwise surprise of the target train split against the source sample, with `params`."""
    seed = ctx.seed
    ctx.note("surprise: histogramming source and target activations")
    return layerwise_surprise(ctx.model, ctx.layers, seeded_sample(ctx.data.source, params["samples"], seed).x,
                              seeded_sample(ctx.data.train, params["samples"], seed).x, bins=params["bins"],
                              pseudocount=params["pseudocount"], unit=params["unit"], reduce=params["reduce"])
