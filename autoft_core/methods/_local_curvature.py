"""Block-curvature products that run within each layer (`LocalCurvature`), for networks piecewise linear above
their layers: the same C_l v as `_curvature.BlockCurvature`'s double backward, at a fraction of its cost.

For the mean cross-entropy L over n examples, layer l's exact Hessian block splits (Schraudolph 2002; Martens
2020, Sec. 8) into

    ∇²_{θ_l} L = (1/n) Σ_i [ J_iᵀ H_i J_i + Σ_k q_ik ∇²_{θ_l} logit_ik ],

J_i = ∂logits_i/∂θ_l, H_i = diag(p_i) − p_i p_iᵀ (the softmax cross-entropy's Hessian in the logits) and
q_i = p_i − onehot(y_i); the first term alone is the Gauss-Newton block. When every op between the layer's
output z_l and the logits is piecewise linear (convolutions, linear maps, eval-mode BatchNorm, ReLU, sums,
pooling, reshapes: checked on the autograd graph), ∂logits/∂z_l does not move with θ_l (within a linear
piece: ReLU's second derivative counts as 0, as in `_curvature`'s double backward), so both terms need
layer l alone:
- J_i v = (δ^(k)_i · ∂z_l,i/∂θ_l v)_k, with δ^(k)_i = ∂logit_ik/∂z_l,i from one backward pass per class,
  kept for the whole solve (K × n × |z_l| numbers per layer, bounded by `LOCAL_BYTES`);
- Jᵀ u = the layer's own backward of Σ_k u_ik δ^(k)_i;
- the second term is the Hessian of ψ(θ_l) = Σ_i δ^q_i · z_l,i(θ_l), δ^q = Σ_k q_ik δ^(k)_i: nonzero only where
  the layer's parameters multiply each other (a BatchNorm's γ and the convolution it scales), weight-sized.
A layer here is a convolution or a linear map, or a convolution and the eval-mode BatchNorm that alone reads
its output (`_curvature._conv_batchnorm_pairs`), any of whose parameters are solved: z_l = op(x_l, W', b')
with the BatchNorm folded into (W', b'). A product costs one convolution and one weight gradient of layer l
and two contractions with the δ's, where the double backward runs through every layer above l twice. Any
other model, layer or sample of more than `_curvature.GRAD_CHUNK` examples takes `BlockCurvature`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import nn

from ..core.data import Split
from ..errors import AutoFTError
from ._curvature import (CURVATURES, GRAD_CHUNK, BlockCurvature, _conv_batchnorm_pairs, _first_input, _geometry,
                         _in_model_layout, forward_with_hooks, graph_readers)

LOCAL_BYTES = 1 << 28  # the per-class output gradients of one solve (256 MiB: 29 MB for the digits net)
# Autograd nodes of ops piecewise linear in their tensor inputs when the other inputs are fixed (weights of
# other layers, running statistics): between a layer and the logits only these may occur.
PIECEWISE_LINEAR = frozenset({
    "AccumulateGrad", "AddBackward0", "SubBackward0", "AddmmBackward0", "MmBackward0", "ConvolutionBackward0",
    "NativeBatchNormBackward0", "CudnnBatchNormBackward0", "ReluBackward0", "ThresholdBackward0",
    "MeanBackward0", "MeanBackward1", "SumBackward0", "SumBackward1", "AdaptiveAvgPool2DBackward0",
    "AvgPool2DBackward0", "MaxPool2DWithIndicesBackward0", "ViewBackward0", "UnsafeViewBackward0",
    "ReshapeAliasBackward0", "AsStridedBackward0", "AsStridedBackward1", "PermuteBackward0", "TBackward0",
    "TransposeBackward0", "ExpandBackward0", "SqueezeBackward0", "SqueezeBackward1", "SqueezeBackward4",
    "UnsqueezeBackward0", "CloneBackward0", "CatBackward0", "SliceBackward0", "ToCopyBackward0"})
_BatchNorm = nn.modules.batchnorm._BatchNorm


@dataclass
class _Layer:
    """Where one layer's parameters act: z = op(x, W', b'), `op` a convolution or a linear map and `bn` the
    eval-mode BatchNorm folded in: W' = W·s, b' = (b − μ)·s + β, s = γ/√(σ² + ε) (without `bn`: W' = W, b' = b);
    `solved`: the layer's parameters, in its order. Vectors over them are dicts by parameter id (absent: 0)."""

    op: nn.Conv2d | nn.Linear
    bn: _BatchNorm | None
    solved: list[nn.Parameter]

    @cached_property
    def _norm(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(1/√(σ² + ε), s, b − μ) of the BatchNorm, per channel (fixed while a solve runs)."""
        bn, bias = self.bn, self.op.bias
        inv = torch.rsqrt(bn.running_var + bn.eps)
        scale = inv if bn.weight is None else inv * bn.weight.detach()
        centred = -bn.running_mean if bias is None else bias.detach() - bn.running_mean
        return inv, scale, centred

    def folded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(W', b')."""
        weight, bias = self.op.weight.detach(), None if self.op.bias is None else self.op.bias.detach()
        if self.bn is None:
            return weight, bias
        _, scale, centred = self._norm
        shift = centred * scale if self.bn.bias is None else centred * scale + self.bn.bias.detach()
        return weight * _channels(scale, weight), shift

    def tangent(self, v: dict[int, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(W', b') moved along v: the folding's Jacobian times v."""
        op, bn, weight = self.op, self.bn, self.op.weight.detach()
        dw, db = v.get(id(op.weight), torch.zeros_like(weight)), _get(v, op.bias)
        if bn is None:
            return dw, db if op.bias is not None else None
        inv, scale, centred = self._norm
        dw, db = dw * _channels(scale, dw), (0 if db is None else db * scale) + _get(v, bn.bias, 0)
        dgamma = _get(v, bn.weight)
        if dgamma is not None:
            dw, db = dw + weight * _channels(inv * dgamma, weight), db + centred * inv * dgamma
        return dw, db if isinstance(db, torch.Tensor) else torch.zeros_like(scale)

    def transpose(self, gw: torch.Tensor, gb: torch.Tensor | None) -> torch.Tensor:
        """The solved parameters' gradient (one flat vector) from the gradients of W' and b'."""
        op, bn = self.op, self.bn
        grads = {id(op.weight): gw}
        if bn is None:
            if op.bias is not None:
                grads[id(op.bias)] = gb
        else:
            inv, scale, centred = self._norm
            grads = {id(op.weight): gw * _channels(scale, gw), id(bn.bias): gb,
                     id(bn.weight): inv * ((gw * op.weight.detach()).flatten(1).sum(1) + gb * centred)}
            if op.bias is not None:
                grads[id(op.bias)] = gb * scale
        return torch.cat([grads[id(p)].reshape(-1) for p in self.solved])

    def second(self, gw: torch.Tensor, gb: torch.Tensor | None, v: dict[int, torch.Tensor]) -> torch.Tensor | None:
        """(∇²ψ) v for ψ = <gw, W'> + <gb, b'> with gw, gb fixed (module doc): nonzero only through a solved γ,
        which multiplies W and b; None where it is 0."""
        op, bn = self.op, self.bn
        if bn is None or bn.weight is None or id(bn.weight) not in {id(p) for p in self.solved}:
            return None
        inv, _, _ = self._norm
        dgamma = v.get(id(bn.weight), torch.zeros_like(inv))
        dw = v.get(id(op.weight), torch.zeros_like(gw))
        out = {id(op.weight): gw * _channels(inv * dgamma, gw), id(bn.bias): torch.zeros_like(inv),
               id(bn.weight): inv * ((gw * dw).flatten(1).sum(1) + gb * _get(v, op.bias, 0))}
        if op.bias is not None:
            out[id(op.bias)] = gb * inv * dgamma
        return torch.cat([out[id(p)].reshape(-1) for p in self.solved])

    def apply(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """op(x) with this weight and bias."""
        if isinstance(self.op, nn.Linear):
            return F.linear(x, weight, bias)
        op = self.op
        return F.conv2d(x, weight, bias, op.stride, op.padding, op.dilation, op.groups)

    def backward(self, x: torch.Tensor, g: torch.Tensor, weight: torch.Tensor,
                 bias: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The gradients of W' and b' (None without one) at output gradient g."""
        if isinstance(self.op, nn.Linear):
            rows = g.reshape(-1, g.shape[-1])
            return rows.T @ x.reshape(-1, x.shape[-1]), rows.sum(0) if bias else None
        return torch.ops.aten.convolution_backward(g, x, weight, [weight.shape[0]] if bias else None,
                                                   *_geometry(self.op), [False, True, bias])[1:]


def _channels(scale: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-output-channel vector shaped to scale a weight like `like`."""
    return scale.view(-1, *(1,) * (like.dim() - 1))


def _get(v: dict[int, torch.Tensor], p: torch.Tensor | None, default: object = None):
    """v's part for parameter p (`default` when p is None or not solved)."""
    return default if p is None else v.get(id(p), default)


def _memory_rows(t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """t as (rows, entries) in the order the entries of `like` (t's shape) lie in memory (a channels-last map in
    its own layout is not copied), and the map from such a matrix back to a tensor of that shape and layout."""
    order = [0] + sorted(range(1, like.dim()), key=lambda d: -like.stride(d))
    shape = [like.shape[d] for d in order]
    back = [order.index(d) for d in range(like.dim())]
    return t.permute(order).reshape(t.shape[0], -1), lambda m: m.view(shape).permute(back)


class LocalCurvature:
    """C_l v and the layer gradients of the mean cross-entropy over `sample`, local to each layer (module doc);
    `build` gives None where it does not apply. The model in probe mode."""

    def __init__(self, layers: list[_Layer], kind: str, n: int, inputs: list[torch.Tensor],
                 deltas: list[torch.Tensor], shapes: list[torch.Tensor], probs: torch.Tensor,
                 q: torch.Tensor) -> None:
        self.kind, self.n, self._layers, self._inputs, self._probs = kind, n, layers, inputs, probs
        self._deltas = deltas  # per layer (n, K, entries of z_l in memory order)
        self._shapes = shapes
        self._unrows = [_memory_rows(z, z)[1] for z in shapes]
        self._folded = [layer.folded() for layer in layers]
        self.grads, self._loss_grads = [], []  # ∇θ_l L, and the (W', b') gradients it comes from
        for layer, x, d, unrow, (weight, bias) in zip(layers, inputs, deltas, self._unrows, self._folded):
            dq = unrow(torch.bmm(q.unsqueeze(1), d).squeeze(1))  # Σ_k q_k δ^(k): the loss's output gradient
            gw, gb = layer.backward(x, dq, weight, bias is not None)
            self.grads.append(layer.transpose(gw, gb) / n)
            self._loss_grads.append((gw, gb))

    @classmethod
    def build(cls, model: nn.Module, params: Sequence[Sequence[nn.Parameter]], sample: Split,
              kind: str) -> LocalCurvature | None:
        """The local products for `params`' layers on `sample`, or None where the module doc's conditions fail."""
        if kind not in CURVATURES:
            raise ValueError(f"unknown curvature {kind!r}; valid: {', '.join(CURVATURES)}")
        if len(sample) == 0:
            raise AutoFTError("no example to compute curvature on: the probe sample is empty; use a task with "
                              "target training examples (--shots >= 1)")
        x = _in_model_layout(sample.x, model)
        layers = _layers(model, params, x[:1]) if len(sample) <= GRAD_CHUNK else None
        if layers is None:
            return None
        inputs: dict[int, torch.Tensor] = {}
        outputs: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(layers))}
        hooks = []
        for i, layer in enumerate(layers):
            hooks.append(layer.op.register_forward_pre_hook(
                lambda m, args, kwargs, i=i: inputs.__setitem__(i, _first_input(args, kwargs).detach()),
                with_kwargs=True))
            hooks.append((layer.bn or layer.op).register_forward_hook(lambda m, a, out, i=i: outputs[i].append(out)))
        logits = forward_with_hooks(model, x, hooks)
        zs = [calls[0] for calls in outputs.values() if len(calls) == 1]
        classes = logits.shape[-1]
        size = classes * sum(z.numel() for z in zs) * zs[0].element_size() if zs else 0
        if len(zs) != len(layers) or len(inputs) != len(layers) or size > LOCAL_BYTES or not _local(logits, layers):
            return None
        per_class = [torch.autograd.grad(logits, zs, torch.eye(classes, dtype=logits.dtype, device=logits.device)[k]
                                         .expand_as(logits), retain_graph=k < classes - 1) for k in range(classes)]
        deltas = [torch.stack([_memory_rows(d[l], z)[0] for d in per_class], 1) for l, z in enumerate(zs)]
        probs = logits.detach().softmax(-1)
        q = probs - F.one_hot(sample.y, classes).to(probs.dtype)
        return cls(layers, kind, len(sample), [inputs[i] for i in range(len(layers))], deltas,
                   [z.detach() for z in zs], probs, q)

    def product(self, layer: int, v: torch.Tensor) -> torch.Tensor:
        """C_l v for a flat vector v over layer `layer`'s parameters (the mean over the sample)."""
        spec, x, d, unrow = self._layers[layer], self._inputs[layer], self._deltas[layer], self._unrows[layer]
        weight, bias = self._folded[layer]
        along = {id(p): piece.view_as(p) for p, piece in zip(spec.solved, v.split([p.numel() for p in spec.solved]))}
        dz, _ = _memory_rows(spec.apply(x, *spec.tangent(along)), self._shapes[layer])
        u = torch.bmm(d, dz.unsqueeze(-1)).squeeze(-1)  # J v: (n, K)
        p = self._probs
        hz = p * u - p * (p * u).sum(-1, keepdim=True)
        total = spec.transpose(*spec.backward(x, unrow(torch.bmm(hz.unsqueeze(1), d).squeeze(1)), weight,
                                              bias is not None))
        if self.kind == "hessian":
            second = spec.second(*self._loss_grads[layer], along)
            if second is not None:
                total = total + second
        return total / self.n


def _layers(model: nn.Module, params: Sequence[Sequence[nn.Parameter]], example: torch.Tensor) -> list[_Layer] | None:
    """Each parameter group as a `_Layer`, or None when some group is not a convolution or linear map with at
    most the eval-mode BatchNorm that alone reads its output (and nothing else)."""
    owner = {id(p): m for m in model.modules() for p in m.parameters(recurse=False)
             if "forward" not in vars(m)}  # a module whose forward was replaced computes who knows what
    if any(isinstance(m, _BatchNorm) and (m.training or m.running_var is None) for m in model.modules()):
        return None
    convs = [m for m in model.modules() if type(m) is nn.Conv2d and m.padding_mode == "zeros"
             and not isinstance(m.padding, str)]
    conv_of = {bn: conv for conv, bn in _conv_batchnorm_pairs(model, convs, example).items()}
    layers = []
    for group in params:
        modules = list({id(owner.get(id(p))): owner.get(id(p)) for p in group}.values())
        norms = [m for m in modules if isinstance(m, _BatchNorm)]
        ops = [m for m in modules if type(m) is nn.Linear or m in convs]
        if len(norms) > 1 or len(ops) > 1 or len(norms) + len(ops) != len(modules) or not modules:
            return None
        bn = norms[0] if norms else None
        if bn is not None and (bn not in conv_of or (ops and ops[0] is not conv_of[bn])):
            return None
        layers.append(_Layer(conv_of[bn] if bn is not None else ops[0], bn, list(group)))
    return layers


def _local(logits: torch.Tensor, layers: Sequence[_Layer]) -> bool:
    """Whether every node of the logits' autograd graph is piecewise linear (`PIECEWISE_LINEAR`) and each solved
    parameter is read once (by its own module): then the products are local (module doc)."""
    readers = graph_readers(logits.grad_fn)
    reads = {id(node.variable): count for node, count in readers.items() if hasattr(node, "variable")}
    return (all(type(node).__name__ in PIECEWISE_LINEAR for node in readers)
            and all(reads.get(id(p), 0) <= 1 for layer in layers for p in layer.solved))


def curvature(model: nn.Module, params: Sequence[Sequence[nn.Parameter]], sample: Split,
              kind: str) -> LocalCurvature | BlockCurvature:
    """The block-curvature products of `params`' layers on `sample`: local where the model allows (module doc),
    `BlockCurvature`'s double backward otherwise; the model in probe mode."""
    return LocalCurvature.build(model, params, sample, kind) or BlockCurvature(model, params, sample, kind)
