"""Per-layer (block-diagonal) curvature and the damped Newton step s_l = (C_l + λ_l I)⁻¹ g_l.

C_l is layer l's diagonal block of the curvature of the mean cross-entropy L over a fixed sample, the
model in eval mode, in fp32 without autocast (`_common.full_precision`):
- `hessian`: the exact Hessian block ∇²_{θ_l} L; products C_l v = ∂(g_l·v)/∂θ_l by double backward
  through the graph of one gradient evaluation (Pearlmutter's exact Hessian-vector product);
- `gauss-newton`: the generalised Gauss-Newton block J_lᵀ H_z J_l (J_l = ∂logits/∂θ_l, H_z = the
  softmax cross-entropy's Hessian in the logits, diag(p) − ppᵀ per example), positive semi-definite and,
  for this loss, equal to the Fisher information; J_l v by the double-backward trick, J_lᵀ by backward.
Every product moves layer l alone (block l of C times v), so no other layer's block leaks in.

Where the network is piecewise linear above each layer and each layer is a convolution or linear map (with
the BatchNorm it feeds), the methods take the same products from `_local_curvature`, which computes them
within the layer (`_local_curvature.curvature` chooses); this module's double backward serves every other
model, and checks those (`tests/test_local_curvature.py`).

Solver: `iterations` = k Lanczos steps on C_l from g_l (full reorthogonalisation), the same k for every
layer (capped at the layer's parameter count, where the Krylov space is exhausted and the step exact).
They give the tridiagonal T_l = Q_lᵀ C_l Q_l; its Ritz values θ (the eigenvalues of T_l) estimate C_l's
extreme eigenvalues, which Lanczos finds first (better than k power iterations). Levenberg-Marquardt
damping relative to the layer's own curvature:

    λ_l = damping · max|θ| + max(0, −min θ),      s_l = ‖g_l‖ Q_l (T_l + λ_l I)⁻¹ e_1,

i.e. exactly k steps of conjugate gradient on (C_l + λ_l I) s = g_l (the Krylov spaces of C_l and
C_l + λI from g_l coincide); the shift max(0, −min θ) makes T_l + λ_l I positive semi-definite when the
exact Hessian is indefinite, and damping > 0 (at least MIN_DAMPING) definite, so the step is always
defined (a block with no curvature at all, every θ = 0, steps along the gradient itself). Per-layer
diagnostics: the iterations run (and the Krylov dimension reached: fewer when the space became invariant,
where the step is exact), the curvature along the gradient gᵀC_l g/‖g‖² (= T_l[0, 0]), the extreme Ritz
values, the damping λ_l and the relative residual ‖(C_l + λ_l I)s_l − g_l‖/‖g_l‖ (= β_k |y_k| / ‖g_l‖). One
host sync per call: the Lanczos scalars stay on the device until all layers are done.

Speed: while the gradient graphs are built, each eval-mode BatchNorm runs as its affine map
x·γ/√(σ²+ε) + (β − μγ/√(σ²+ε)) (`affine_batchnorm`): the same function, but its double backward is two
elementwise products where native BatchNorm's is its training-mode formula (28% of a product's time).
On the digits ResNet (label flip, default parameters, one thread, CPU time, 15 alternated pairs,
2026-11-26) auto-rgn+hessian's weights cost 0.73× [IQR 0.70–0.78] and +hessian+change's 0.71×
[0.68–0.81] of what they did with native BatchNorm; gradients and products agree with native
BatchNorm's to 8e-7 (relative: fp32 rounding).

Each plain Conv2d runs as `_Conv2d` as well (`masked_conv_backward`). PyTorch's convolution double backward
ignores what the autograd engine asks of it: in a product for layer l it computes a weight gradient for
every convolution above l (from the perturbed input gradient, as a convolution over the batch with
transposed copies) and the gradient of layer l's own input (the image's, for the stem). `_Conv2d`'s
backward computes the input gradient as conv_transpose2d (recorded, its backward honours the engine's
mask; the same kernel as convolution_backward's, the same bits, and on oneDNN up to a third faster
for strided convolutions; a 1×1 convolution's as one matrix product, below) and records the weight
gradient as `_ConvWeightGrad` (its input's gradient only when that input depends on the layer), and
outside a recorded graph computes only the weight gradients of the layer whose product runs: two
convolutions per convolution above l and two for its own, the least an exact product takes. `python
bench/curvature.py` (2026-11-27, one thread, CPU time, 15 alternated pairs): digits products 1.43×
faster [IQR 1.35–1.47] than PyTorch's double backward, one whole Newton solve 1.31× [1.28–1.38];
WRN-28-10 (8 examples, 1 pair) products 1.61×, a solve 1.42×, the same bits (before the folding below).

An eval-mode BatchNorm that alone reads a convolution's output (found in the autograd graph of one
forward pass on one example, `_conv_batchnorm_pairs`) is folded into that convolution: it runs with
weight W·γ/√(σ²+ε) and bias (b − μ)γ/√(σ²+ε) + β, the same function, so neither the graph nor its
double backward has a BatchNorm op on activations, only weight-sized ones (the digits ResNet's ten
BatchNorms all fold; of WRN-28-10's 25 pre-activation ones the 13 a convolution feeds fold, the others
stay affine maps). The rounding differs, not the accuracy: against a float64 solve the digits steps
are off by 4e-7–2.0e-5 per layer before and 4e-7–1.5e-5 after. Digits, 64 examples, one thread, CPU
time, 21 alternated pairs (2026-11-27): one Newton solve 1.14× faster [IQR 1.06–1.19] with the folding
and the conv_transpose2d input gradient above than without both. (WRN-28-10 with random weights and
data, 8 examples: its steps moved by up to 2e-3, relative; that random net is far worse conditioned.)

An ungrouped, unpadded 1×1 convolution's input gradient is one matrix product in the channels-last layout
(strided: written into every stride-th pixel of zeros), where oneDNN's 1×1 deconvolution ran at 1–2 GFLOP/s.
MKL adds in another order than oneDNN, so the digits steps move by up to 2.7e-6 (relative), and stay as close
to a float64 solve (5e-7–6.7e-6 per layer on the target sample, 1e-6–1e-5 on the source, either way). Digits,
64 examples, one thread, CPU time (2026-11-28): one Newton solve 0.973× the time [IQR 0.941–1.036] (21
alternated pairs; 0.965× on the input shift, 9 pairs).

Each nn.ReLU runs as `_ReLU` (`relu_without_zero_gradients`): PyTorch records a relu's backward as
threshold_backward(g, out), whose derivative in `out` is a zero tensor, so in every product each relu above the
layer made an activation-sized tensor of zeros and the engine added it into that activation's gradient. `_ReLU`'s
backward runs the same threshold_backward on its output detached: the same bits, three zero tensors and three
additions fewer per product at the digits stem's largest maps. One digits solve 0.986× the time [IQR 0.904–1.001]
(41 alternated pairs; 0.974× on the input shift, 15 pairs), 2026-11-28. Its backward also puts the gradient in
its output's layout (`_like`): a spatial mean's gradient arrives NCHW at a channels-last relu, where
threshold_backward on the two layouts took 190 µs against 24 on one (digits, 64 × 32 × 4 × 4): the same bits,
one solve 0.975× [IQR 0.958–1.016] (31 pairs).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from types import MethodType

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.utils.hooks import RemovableHandle

from ..core.data import Split
from ..errors import AutoFTError

CURVATURES = ("hessian", "gauss-newton")
MIN_DAMPING = 1e-6  # the least relative damping: keeps T + λI invertible (condition number ≤ 1e6) when shifted
GRAD_CHUNK = 512  # examples per forward/backward: bounds the memory of one graph


def flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Tensors concatenated into one detached vector (of the model's dtype: fp32 here)."""
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def _chunks(sample: Split, size: int = GRAD_CHUNK):
    for start in range(0, len(sample), size):
        yield sample.x[start:start + size], sample.y[start:start + size]


def _split(flat_vector: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    out, start = [], 0
    for t in like:
        out.append(flat_vector[start:start + t.numel()].view_as(t))
        start += t.numel()
    return out


def _by_layer(values: Sequence[torch.Tensor], params: Sequence[Sequence[nn.Parameter]]) -> list[list[torch.Tensor]]:
    out, start = [], 0
    for group in params:
        out.append(list(values[start:start + len(group)]))
        start += len(group)
    return out


def mean_gradients(model: nn.Module, params: Sequence[Sequence[nn.Parameter]], sample: Split) -> list[torch.Tensor]:
    """Per-layer flat gradients of the mean cross-entropy over `sample` (model already in probe mode)."""
    flat_params = [p for group in params for p in group]
    total: list[torch.Tensor] | None = None
    for x, y in _chunks(sample):
        loss = F.cross_entropy(model(x), y, reduction="sum")
        grads = torch.autograd.grad(loss, flat_params, allow_unused=True, materialize_grads=True)
        total = list(grads) if total is None else [t + g for t, g in zip(total, grads)]
    if total is None:
        raise AutoFTError("no example to compute gradients on: the probe sample is empty; use a task with "
                          "target training examples (--shots >= 1)")
    return [flat(group) / len(sample) for group in _by_layer(total, params)]


def _in_model_layout(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Images in the memory layout of the model's convolution weights (channels-last once `device.prepare_model`
    placed it): fed the other layout, the stem's products and the ReLU backward after it run on mixed layouts
    (that ReLU's 30x slower). The same bits; digits solves 0.979x the time [IQR 0.934-1.044], 61 pairs."""
    last = torch.channels_last
    if x.dim() == 4 and any(p.dim() == 4 and p.is_contiguous(memory_format=last) and not p.is_contiguous()
                            for p in model.parameters()):
        return x.contiguous(memory_format=last)
    return x


def _affine_map(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel of an eval-mode BatchNorm, the affine map it is: x·scale + shift
    (running statistics, optional γ and β)."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def _affine_forward(bn: nn.modules.batchnorm._BatchNorm, input: torch.Tensor) -> torch.Tensor:
    """An eval-mode BatchNorm computed as its affine map (its input named as torch names it, so a model may
    call it by keyword)."""
    scale, shift = _affine_map(bn)
    shape = (1, -1) + (1,) * (input.dim() - 2)
    return input * scale.view(shape) + shift.view(shape)


def _eval_batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The model's eval-mode BatchNorms with running statistics whose forward is not patched yet."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and not m.training and m.running_var is not None and "forward" not in vars(m)]


@contextmanager
def _forwards(replacements: dict[nn.Module, Callable[..., torch.Tensor]]) -> Iterator[None]:
    """Within: each module computes with its replacement forward; each module's own forward is back afterwards
    (modules whose forward is already replaced are left out by the callers: `"forward" in vars(m)`)."""
    for module, forward in replacements.items():
        module.forward = forward
    try:
        yield
    finally:
        for module in replacements:
            del module.forward


def affine_batchnorm(model: nn.Module) -> AbstractContextManager[None]:
    """Every eval-mode BatchNorm with running statistics computes as its affine map (module doc: a
    cheaper double backward); their own forward is back afterwards."""
    return _forwards({bn: MethodType(_affine_forward, bn) for bn in _eval_batchnorms(model)})


class _ReLU(torch.autograd.Function):
    """relu whose backward, recorded with create_graph, reads its output detached (module doc): the same ops
    and bits as PyTorch's, without the zero tensor PyTorch's double backward makes for that output."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        out, = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(_like(g, out), out.detach(), 0)


def _like(g: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """g in the memory layout of `out` (a gradient from a spatial mean arrives NCHW at a channels-last relu:
    threshold_backward on the two layouts ran 8x slower than the copy and the op on one)."""
    last = torch.channels_last
    if out.dim() == 4 and out.is_contiguous(memory_format=last) and not g.is_contiguous(memory_format=last):
        return g.contiguous(memory_format=last)
    return g


def _relu_forward(input: torch.Tensor) -> torch.Tensor:
    """An nn.ReLU's forward as `_ReLU` (its input named as torch names it, so a model may call it by keyword)."""
    return _ReLU.apply(input)


def relu_without_zero_gradients(model: nn.Module) -> AbstractContextManager[None]:
    """Every nn.ReLU module computes as `_ReLU` (module doc); their own forward is back afterwards."""
    return _forwards({m: _relu_forward for m in model.modules() if type(m) is nn.ReLU and "forward" not in vars(m)})


class _WeightGradients:
    """Whose weight gradients a patched convolution's backward computes: every one, or within `only`
    those of one layer (the one a product or a transposed graph is for)."""

    def __init__(self) -> None:
        self._wanted: frozenset[int] | None = None
        self._reached: dict[object, frozenset[int]] = {}  # autograd node -> ids of the leaves it reaches

    def want(self, keys: tuple[int, ...]) -> bool:
        """Whether a gradient computed from the parameters whose id()s are `keys` is needed now."""
        return self._wanted is None or not self._wanted.isdisjoint(keys)

    def depends(self, x: torch.Tensor) -> bool:
        """Whether x depends on a wanted parameter (its autograd graph reaches one): only then is its
        gradient needed."""
        if x.grad_fn is None:
            return x.requires_grad and self.want((id(x),))
        return self._wanted is None or not self._reaches(x.grad_fn).isdisjoint(self._wanted)

    def _reaches(self, root: object) -> frozenset[int]:
        """ids of the leaf tensors the autograd graph from node `root` reaches (remembered per node)."""
        stack = [root]
        while stack:
            node = stack[-1]
            if node in self._reached:
                stack.pop()
                continue
            pending = [n for n, _ in node.next_functions if n is not None and n not in self._reached]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            leaf = getattr(node, "variable", None)
            self._reached[node] = frozenset().union(
                {id(leaf)} if leaf is not None else set(),
                *(self._reached[n] for n, _ in node.next_functions if n is not None))
        return self._reached[root]

    @contextmanager
    def only(self, params: Sequence[nn.Parameter]) -> Iterator[None]:
        """Within: only these parameters' gradients are computed."""
        self._wanted = frozenset(map(id, params))
        try:
            yield
        finally:
            self._wanted = None


def _geometry(conv: nn.Conv2d) -> tuple:
    """`conv`'s stride, padding, dilation, transposed, output padding and groups, as convolution_backward takes them."""
    return conv.stride, conv.padding, conv.dilation, False, [0] * len(conv.stride), conv.groups


class _ConvWeightGrad(torch.autograd.Function):
    """The weight gradient of `conv` at output gradient g and input x; its backward computes x's gradient
    only when x depends on a wanted parameter (PyTorch's own convolution double backward computes it
    whenever the weight's gradient is perturbed)."""

    @staticmethod
    def forward(ctx, g: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, conv: nn.Conv2d,
                grads: _WeightGradients) -> torch.Tensor:
        ctx.save_for_backward(g, x)  # the weight only gives the forward its shape
        ctx.conv, ctx.grads = conv, grads
        return torch.ops.aten.convolution_backward(g, x, weight, None, *_geometry(conv), [False, True, False])[1]

    @staticmethod
    @once_differentiable
    def backward(ctx, ggw: torch.Tensor):
        g, x = ctx.saved_tensors
        conv = ctx.conv
        gg = gx = None
        if ctx.needs_input_grad[0]:
            gg = F.conv2d(x, ggw, None, conv.stride, conv.padding, conv.dilation, conv.groups)
        if ctx.needs_input_grad[1] and ctx.grads.depends(x):
            gx = torch.ops.aten.convolution_backward(g, x, ggw, None, *_geometry(conv), [True, False, False])[0]
        return gg, gx, None, None, None


def _input_gradient(g: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """The gradient of `conv`'s input x at output gradient g: one matrix product for an ungrouped, unpadded 1x1
    convolution (oneDNN's strided 1x1 deconvolution ran at 1-2 GFLOP/s), conv_transpose2d otherwise (the same
    kernel as convolution_backward's, faster for strided convolutions on oneDNN; module doc); recorded with
    create_graph, its own backward computes the weight's gradient only when asked."""
    if weight.shape[2:] == (1, 1) and conv.groups == 1 and not any(conv.padding):
        out = g.permute(0, 2, 3, 1) @ weight[:, :, 0, 0]  # (N, H_out, W_out, C_in): channels last
        if out.shape[1:3] != x.shape[2:]:  # strided: the output's pixels read every stride-th input pixel
            full = out.new_zeros(x.shape[0], *x.shape[2:], x.shape[1])
            full[:, ::conv.stride[0], ::conv.stride[1]] = out
            out = full
        return out.permute(0, 3, 1, 2)
    size = [(g.shape[i + 2] - 1) * conv.stride[i] - 2 * conv.padding[i]
            + conv.dilation[i] * (weight.shape[i + 2] - 1) + 1 for i in range(len(conv.stride))]
    extra = [x.shape[i + 2] - size[i] for i in range(len(size))]
    return F.conv_transpose2d(g, weight, None, conv.stride, conv.padding, extra, conv.groups, conv.dilation)


class _Conv2d(torch.autograd.Function):
    """F.conv2d whose backward computes only the wanted weights' gradients and, recorded with create_graph,
    the input gradient as conv_transpose2d, whose own backward skips the weight's gradient when no product
    needs it (module doc). `keys`: the id()s of the parameters the weight and the bias are computed from."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, conv: nn.Conv2d,
                grads: _WeightGradients, keys: tuple[tuple[int, ...], tuple[int, ...]]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.conv, ctx.grads, ctx.keys = conv, grads, keys
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, weight = ctx.saved_tensors
        conv = ctx.conv
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1] and ctx.grads.want(ctx.keys[0])
        gb = g.sum((0, 2, 3)) if ctx.needs_input_grad[2] and ctx.grads.want(ctx.keys[1]) else None
        # with create_graph: ops whose own backward computes only what a product needs
        recorded = torch.is_grad_enabled()
        gx = _input_gradient(g, x, weight, conv) if need_x and (recorded or ctx.grads.depends(x)) else None
        gw = None
        if need_w and recorded:
            gw = _ConvWeightGrad.apply(g, x, weight.detach(), conv, ctx.grads)
        elif need_w:
            gw = torch.ops.aten.convolution_backward(g, x, weight, None, *_geometry(conv), [False, True, False])[1]
        return gx, gw, gb, None, None, None


def _masked_forward(conv: nn.Conv2d, grads: _WeightGradients, input: torch.Tensor) -> torch.Tensor:
    """`conv`'s forward as `_Conv2d` (its input named as torch names it, so a model may call it by keyword)."""
    return _Conv2d.apply(input, conv.weight, conv.bias, conv, grads, ((id(conv.weight),), (id(conv.bias),)))


def _folded_forward(conv: nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm, grads: _WeightGradients,
                    input: torch.Tensor) -> torch.Tensor:
    """bn(conv(input)) for an eval-mode BatchNorm, as one `_Conv2d` with the BatchNorm's scale folded into the
    weight and its shift into the bias (module doc): the same function, no activation-sized BatchNorm op."""
    scale, shift = _affine_map(bn)
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    weight = conv.weight * scale.view(-1, *(1,) * (conv.weight.dim() - 1))
    keys = ((id(conv.weight), id(bn.weight)), (id(conv.bias), id(bn.weight), id(bn.bias)))
    return _Conv2d.apply(input, weight, shift, conv, grads, keys)


def _unchanged(input: torch.Tensor) -> torch.Tensor:
    """The forward of a BatchNorm folded into the convolution before it."""
    return input


def _first_input(args: tuple, kwargs: dict) -> torch.Tensor:
    """A module call's input, given by position or by torch's keyword `input`."""
    return args[0] if args else kwargs["input"]


def forward_with_hooks(model: nn.Module, x: torch.Tensor, hooks: Sequence[RemovableHandle]) -> torch.Tensor:
    """model(x) with its autograd graph recorded, and the `hooks` that watch it removed afterwards (also when
    the forward fails)."""
    try:
        with torch.enable_grad():
            return model(x)
    finally:
        for hook in hooks:
            hook.remove()


def graph_readers(root: object) -> dict[object, int]:
    """Every node of the autograd graph from node `root`, with how many nodes read its output (`root`: 0)."""
    readers: dict[object, int] = {root: 0}
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for child, _ in node.next_functions:
            if child is not None:
                readers[child] = readers.get(child, 0) + 1
                stack.append(child)
    return readers


def _conv_batchnorm_pairs(model: nn.Module, convs: Sequence[nn.Conv2d],
                          example: torch.Tensor) -> dict[nn.Conv2d, nn.modules.batchnorm._BatchNorm]:
    """The convolutions whose output only an eval-mode BatchNorm reads (each called once): found in the
    autograd graph of one forward pass on `example`, so any model's order of modules is read as it runs."""
    norms = _eval_batchnorms(model)
    if not convs or not norms:
        return {}
    made: dict[nn.Module, list[object]] = {m: [] for m in convs}  # grad_fn of each call's output
    read: dict[nn.Module, list[object]] = {m: [] for m in norms}  # grad_fn of each call's input
    hooks = [m.register_forward_hook(lambda m, args, out: made[m].append(out.grad_fn)) for m in convs]
    hooks += [m.register_forward_pre_hook(lambda m, args, kwargs: read[m].append(_first_input(args, kwargs).grad_fn),
                                          with_kwargs=True) for m in norms]
    readers = graph_readers(forward_with_hooks(model, example, hooks).grad_fn)
    by_output = {calls[0]: conv for conv, calls in made.items() if len(calls) == 1 and calls[0] is not None}
    return {by_output[calls[0]]: bn for bn, calls in read.items()
            if len(calls) == 1 and calls[0] in by_output and readers.get(calls[0]) == 1}


def masked_conv_backward(model: nn.Module, grads: _WeightGradients,
                         example: torch.Tensor) -> AbstractContextManager[None]:
    """Every plain Conv2d (zero padding given as numbers) computes as `_Conv2d`, with the eval-mode
    BatchNorm that alone reads its output folded in (module doc: no wasted convolution in a product, no
    BatchNorm op on activations); their own forward is back afterwards. `example`: an input of the model."""
    convs = [m for m in model.modules() if type(m) is nn.Conv2d and m.padding_mode == "zeros"
             and not isinstance(m.padding, str) and "forward" not in vars(m)]
    pairs = _conv_batchnorm_pairs(model, convs, example)
    forwards: dict[nn.Module, Callable[..., torch.Tensor]] = {
        conv: partial(_folded_forward, conv, pairs[conv], grads) if conv in pairs
        else partial(_masked_forward, conv, grads) for conv in convs}
    return _forwards({**forwards, **{bn: _unchanged for bn in pairs.values()}})


class BlockCurvature:
    """Block-diagonal curvature-vector products C_l v of the mean cross-entropy over `sample`, and its
    per-layer gradient, from graphs kept for the whole sample (model already in probe mode)."""

    def __init__(self, model: nn.Module, params: Sequence[Sequence[nn.Parameter]], sample: Split, kind: str) -> None:
        if kind not in CURVATURES:
            raise ValueError(f"unknown curvature {kind!r}; valid: {', '.join(CURVATURES)}")
        self.params, self.kind, self.n = [list(g) for g in params], kind, len(sample)
        flat_params = [p for group in self.params for p in group]
        self._graphs: list = []
        self._weight_grads = _WeightGradients()
        total: list[torch.Tensor] | None = None
        with (masked_conv_backward(model, self._weight_grads, sample.x[:1]), affine_batchnorm(model),
              relu_without_zero_gradients(model)):
            chunks = [(model(_in_model_layout(x, model)), y) for x, y in _chunks(sample)]
        for logits, y in chunks:
            loss = F.cross_entropy(logits, y, reduction="sum")
            if kind == "hessian":
                grads = torch.autograd.grad(loss, flat_params, create_graph=True, allow_unused=True,
                                            materialize_grads=True)
                self._graphs.append(_by_layer(grads, self.params))
            else:
                grads = torch.autograd.grad(loss, flat_params, retain_graph=True, allow_unused=True,
                                            materialize_grads=True)
                cotangent = torch.zeros_like(logits, requires_grad=True)
                transposed = []
                for group in self.params:
                    with self._weight_grads.only(group):
                        transposed.append(torch.autograd.grad(logits, group, cotangent, create_graph=True,
                                                              allow_unused=True, materialize_grads=True))
                self._graphs.append((logits, logits.detach().softmax(-1), cotangent, transposed))
            detached = [g.detach() for g in grads]
            total = detached if total is None else [t + g for t, g in zip(total, detached)]
        if total is None:
            raise AutoFTError("no example to compute curvature on: the probe sample is empty; use a task with "
                              "target training examples (--shots >= 1)")
        self.grads = [flat(group) / self.n for group in _by_layer(total, self.params)]

    def product(self, layer: int, v: torch.Tensor) -> torch.Tensor:
        """C_l v for a flat vector v over layer `layer`'s parameters (the mean over the sample)."""
        group = self.params[layer]
        pieces = _split(v, group)
        total = torch.zeros_like(v)
        for graph in self._graphs:
            if self.kind == "hessian":
                dot = sum((g * p).sum() for g, p in zip(graph[layer], pieces))
                if not dot.requires_grad:  # the gradient does not depend on these weights
                    continue
                with self._weight_grads.only(group):
                    out = torch.autograd.grad(dot, group, retain_graph=True, allow_unused=True,
                                              materialize_grads=True)
            else:
                logits, probs, cotangent, transposed = graph
                dot = sum((t * p).sum() for t, p in zip(transposed[layer], pieces))
                if not dot.requires_grad:
                    continue
                jv, = torch.autograd.grad(dot, cotangent, retain_graph=True)
                hz = probs * jv - probs * (probs * jv).sum(-1, keepdim=True)
                with self._weight_grads.only(group):
                    out = torch.autograd.grad(logits, group, hz, retain_graph=True, allow_unused=True,
                                              materialize_grads=True)
            total += flat(out)
        return total / self.n


def lanczos(curvature: BlockCurvature, layer: int, start: torch.Tensor,
            steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Q, α, β): k = min(steps, dim) Lanczos steps on C_l from `start`, fully reorthogonalised.

    Q (k, dim) has orthonormal rows spanning the Krylov space; T = tridiag(β[:-1], α, β[:-1]) = Q C_l Qᵀ;
    β[-1] couples the next, unused, direction (the residual). Nothing is read back to the host.
    """
    k = min(steps, start.numel())
    basis = start.new_zeros(k, start.numel())
    alphas, betas = [], []
    q = _normalised(start)
    scale = torch.zeros((), dtype=start.dtype, device=start.device)  # running estimate of ‖T‖
    for j in range(k):
        basis[j] = q
        w = curvature.product(layer, q)
        alpha = torch.dot(q, w)
        used = basis[:j + 1]
        for _ in range(2):  # twice is enough (Giraud et al. 2005)
            w = w - used.T @ (used @ w)
        beta = torch.linalg.vector_norm(w)
        scale = torch.maximum(scale, alpha.abs() + beta)
        alphas.append(alpha)
        betas.append(beta)
        # Normalised, then orthogonalised once more: a small β leaves roundoff in w whose components
        # along the basis normalisation would blow up. A β at roundoff level (≤ eps‖T‖) means the
        # Krylov space is invariant: the next directions are 0 and add only decoupled zero rows to T.
        q = _normalised(w)
        q = _normalised(q - used.T @ (used @ q)) * (beta > torch.finfo(w.dtype).eps * scale)
    empty = start.new_zeros(0)
    return basis, torch.stack(alphas) if alphas else empty, torch.stack(betas) if betas else empty


def _normalised(v: torch.Tensor) -> torch.Tensor:
    """v / ‖v‖, and 0 for v = 0 (a zero direction adds only zero rows to T)."""
    return v / torch.linalg.vector_norm(v).clamp_min(torch.finfo(v.dtype).tiny)


@dataclass
class DampedStep:
    """The small-matrix half of one layer's solve: coefficients y (s = Qᵀy; None: no curvature was
    seen anywhere in the Krylov space, and the step is the gradient itself) and the diagnostics."""

    coefficients: np.ndarray | None
    diagnostics: dict[str, float]


def damped_step(alpha: np.ndarray, beta: np.ndarray, grad_norm: float, damping: float) -> DampedStep:
    """y = (T + λI)⁻¹ ‖g‖e_1 with λ = damping·max|θ| + max(0, −min θ), θ the Ritz values of T (float64);
    damping > 0 keeps T + λI invertible (0 only where T is known to be positive definite)."""
    k = len(alpha)
    live = np.flatnonzero((alpha != 0) | (beta != 0))
    info = {"iterations": k, "krylov_dim": int(live[-1]) + 1 if len(live) else 0, "grad_norm": grad_norm,
            "curvature_along_grad": float(alpha[0]) if k else 0.0}
    if k == 0 or grad_norm == 0.0:
        return DampedStep(np.zeros(k), {**info, "ritz_min": 0.0, "ritz_max": 0.0, "damping": 0.0, "residual": 0.0})
    tri = np.diag(alpha) + np.diag(beta[:-1], 1) + np.diag(beta[:-1], -1)
    ritz = np.linalg.eigvalsh(tri)
    lam = damping * float(np.abs(ritz).max()) + max(0.0, -float(ritz.min()))
    rhs = np.zeros(k)
    rhs[0] = grad_norm
    info.update(ritz_min=float(ritz.min()), ritz_max=float(ritz.max()), damping=lam)
    if not ritz.any():  # no curvature anywhere in the Krylov space
        return DampedStep(None, {**info, "residual": 0.0})
    y = np.linalg.solve(tri + lam * np.eye(k), rhs)
    return DampedStep(y, {**info, "residual": float(beta[-1] * abs(y[-1]) / grad_norm)})


@dataclass
class NewtonSteps:
    """Per-layer damped Newton steps s_l and one diagnostics record per layer."""

    steps: list[torch.Tensor]
    diagnostics: list[dict[str, float]]


def newton_steps(curvature: BlockCurvature, iterations: int, damping: float) -> NewtonSteps:
    """s_l = (C_l + λ_l I)⁻¹ g_l for every layer of `curvature` (this module's `BlockCurvature` or
    `_local_curvature.LocalCurvature`: the same products; see the module doc)."""
    runs = [lanczos(curvature, l, g, iterations) for l, g in enumerate(curvature.grads)]
    scalars = torch.cat([torch.cat([a, b]) for _, a, b in runs] +
                        [torch.stack([torch.linalg.vector_norm(g) for g in curvature.grads])]).double().cpu().numpy()
    steps, diagnostics, start = [], [], 0
    for (basis, alpha, _), norm, grad in zip(runs, scalars[-len(runs):], curvature.grads):
        k = len(alpha)
        solved = damped_step(scalars[start:start + k], scalars[start + k:start + 2 * k], float(norm), damping)
        start += 2 * k
        y = solved.coefficients
        steps.append(grad.clone() if y is None
                     else basis.T @ torch.as_tensor(y, dtype=basis.dtype, device=basis.device))
        diagnostics.append(solved.diagnostics)
    return NewtonSteps(steps, diagnostics)
