"""Helpers shared by the relative-gradient-norm methods (auto-rgn and its Hessian / change variants).

Every such method scores layer l by ‖v_l‖₂ / ‖θ_l‖₂ for some per-layer vector v_l built from
gradients of the mean cross-entropy over a few fixed minibatches: the gradient g itself, the L-BFGS
Newton step H⁻¹g, or a target-minus-source difference of either. This module holds the pieces:
seeded probe minibatches, per-layer mean gradients (model in eval mode, so BatchNorm statistics never
move), L-BFGS curvature pairs and the two-loop recursion, the relative norms and multipliers, and
`RelativeNormMethod`, the base class whose subclasses only say (in `_vectors`) which v_l they measure.
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..core.data import Split
from ..errors import AutoFTError, NonFiniteError
from ..layers import Layer
from ._common import mean_loss, minibatches, normalise_by_max, restored
from .base import LayerWeights, Method, MethodContext, Param

Batch = tuple[torch.Tensor, torch.Tensor]
EVERY = ("epoch", "once", "step")
CURVATURE_EPS = 0.05  # a pair (s, y) is kept only when sᵀy > CURVATURE_EPS·‖s‖‖y‖ (angle < 87°)


@dataclass(frozen=True)
class Probe:
    """The fixed minibatches one score is computed on: target always, source for the change variants."""

    target: list[Batch]
    source: list[Batch] | None = None


def probe_batches(split: Split, n_batches: int, batch_size: int, seed: int) -> list[Batch]:
    """`n_batches` seeded minibatches of `split`; equal splits and seeds give equal batches."""
    return list(minibatches(split, n_batches, batch_size, seed))


def _layer_params(model: nn.Module, layers: Sequence[Layer]) -> list[list[nn.Parameter]]:
    return [layer.parameters(model) for layer in layers]


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1).float() for t in tensors])


def _mean_gradients(model: nn.Module, params: list[list[nn.Parameter]], batches: Sequence[Batch]) -> list[torch.Tensor]:
    """Per-layer flat gradients of the loss averaged over `batches` (model already in probe mode)."""
    flat_params = [p for group in params for p in group]
    device = flat_params[0].device
    total: list[torch.Tensor] | None = None
    for x, y in batches:
        loss = mean_loss(model, x.to(device), y.to(device))
        grads = torch.autograd.grad(loss, flat_params, materialize_grads=True)
        total = list(grads) if total is None else [t + g for t, g in zip(total, grads)]
    if total is None:
        raise AutoFTError("no minibatch to compute gradients on: the data split is empty")
    out, start = [], 0
    for group in params:
        out.append(_flat(total[start:start + len(group)]) / len(batches))
        start += len(group)
    return out


def _prepare(model: nn.Module) -> None:
    """Probe mode: eval (BatchNorm uses and keeps its running statistics), every parameter differentiable."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)


def layer_gradients(model: nn.Module, layers: Sequence[Layer], batches: Sequence[Batch]) -> list[torch.Tensor]:
    """∇θ_l of the mean loss over `batches`, one flat vector per layer; the model is left exactly as it was."""
    with restored(model):
        _prepare(model)
        return _mean_gradients(model, _layer_params(model, layers), batches)


def two_loop(grad: torch.Tensor, s: Sequence[torch.Tensor], y: Sequence[torch.Tensor],
             gamma: float | None = None) -> torch.Tensor:
    """H⁻¹g by the L-BFGS two-loop recursion (Nocedal & Wright, Alg. 7.4) on flat vectors.

    `s`, `y` are the curvature pairs oldest first, each with sᵀy > 0; H₀ = γI with γ = sᵀy / yᵀy of the
    newest pair (N&W eq. 7.20) unless `gamma` is given; without pairs or `gamma`, H₀ = I.
    """
    if len(s) != len(y):
        raise ValueError(f"{len(s)} steps but {len(y)} gradient differences")
    if gamma is None:
        gamma = float(torch.dot(s[-1], y[-1]) / torch.dot(y[-1], y[-1])) if s else 1.0
    rho = [1.0 / torch.dot(yi, si) for si, yi in zip(s, y)]
    q = grad.clone()
    alphas = []
    for si, yi, ri in zip(reversed(s), reversed(y), reversed(rho)):
        alpha = ri * torch.dot(si, q)
        q -= alpha * yi
        alphas.append(alpha)
    r = q * gamma
    for si, yi, ri, alpha in zip(s, y, rho, reversed(alphas)):
        beta = ri * torch.dot(yi, r)
        r += (alpha - beta) * si
    return r


def _keep_pair(s: torch.Tensor, y: torch.Tensor) -> bool:
    """The curvature condition with a margin: pairs along negative or weak curvature are skipped."""
    return bool(torch.dot(s, y) > CURVATURE_EPS * torch.linalg.vector_norm(s) * torch.linalg.vector_norm(y))


@dataclass
class Memory:
    """One block's L-BFGS curvature pairs, oldest first, and H₀'s scale for when none was kept."""

    s: list[torch.Tensor] = field(default_factory=list)
    y: list[torch.Tensor] = field(default_factory=list)
    fallback_gamma: float = 1.0

    def solve(self, grad: torch.Tensor) -> torch.Tensor:
        """H⁻¹ grad under this memory."""
        return two_loop(grad, self.s, self.y, None if self.s else self.fallback_gamma)


def lbfgs_memories(grads: Sequence[torch.Tensor], hvp: Callable[[list[torch.Tensor]], list[torch.Tensor]],
                   pairs: int, radii: Sequence[float]) -> list[Memory]:
    """Curvature pairs per block from `pairs` L-BFGS iterations on the local quadratic model.

    Block l starts at gradient grads[l]; each iteration probes s_l = radii[l]·d_l/‖d_l‖ along its
    L-BFGS direction d_l = −H_l g_l, gets y = hvp(s) (y_l ≈ (∇²L s)_l) and takes the exact line-search
    step on the model, g_l += t·y_l with t = −g_lᵀs_l / s_lᵀy_l. Pairs are scale-free in L-BFGS, so
    (s_l, y_l) is stored; on a quadratic the directions are conjugate and H_l reaches the exact inverse
    after dim iterations (quadratic termination). A block whose pair fails the curvature condition
    stops there (its next probe would repeat the same direction) and is held still (s_l = 0); if that
    was its first probe, H₀ = γI with γ = ‖s‖/‖y‖, the inverse of the Hessian's gain along −g.
    """
    memories = [Memory() for _ in grads]
    current = [g.clone() for g in grads]
    active = [True] * len(grads)
    for _ in range(pairs):
        if not any(active):
            break
        probes = []
        for g, memory, r, live in zip(current, memories, radii, active):
            d = memory.solve(g)
            probes.append(-r * d / torch.linalg.vector_norm(d).clamp_min(1e-30) if live else torch.zeros_like(g))
        for l, (s, y) in enumerate(zip(probes, hvp(probes))):
            memory = memories[l]
            if not active[l]:
                continue
            if not _keep_pair(s, y):
                active[l] = False
                if not memory.s and torch.linalg.vector_norm(y) > 0:
                    memory.fallback_gamma = float(torch.linalg.vector_norm(s) / torch.linalg.vector_norm(y))
                continue
            current[l].add_(y, alpha=float(-torch.dot(current[l], s) / torch.dot(s, y)))
            memory.s.append(s)
            memory.y.append(y)
    return memories


@dataclass
class NewtonSteps:
    """Per-layer gradients g_l, L-BFGS Newton steps H_l⁻¹g_l and how many curvature pairs each used."""

    grads: list[torch.Tensor]
    steps: list[torch.Tensor]
    pairs_used: list[int]


def newton_steps(model: nn.Module, layers: Sequence[Layer], batches: Sequence[Batch], pairs: int,
                 step: float) -> NewtonSteps:
    """H_l⁻¹g_l per layer, from `pairs` L-BFGS pairs per layer on the mean loss over `batches`, then discarded.

    Hessian-vector products are forward differences of the gradient on the same fixed minibatches,
    y = g(θ₀ + s) − g(θ₀), every probe starting at the pretrained θ₀ with layer l moved by step·‖θ_l‖;
    each layer keeps its own memory (block-diagonal H). The weights are restored bit for bit.
    """
    with restored(model):
        _prepare(model)
        params = _layer_params(model, layers)
        origin = [[p.detach().clone() for p in group] for group in params]
        grads = _mean_gradients(model, params, batches)

        def gradient_change(probes: list[torch.Tensor]) -> list[torch.Tensor]:
            with torch.no_grad():
                for group, start, s in zip(params, origin, probes):
                    _set_flat(group, start, s)
            return [g - g0 for g, g0 in zip(_mean_gradients(model, params, batches), grads)]

        radii = [step * float(torch.linalg.vector_norm(_flat(group))) for group in params]
        memories = lbfgs_memories(grads, gradient_change, pairs, radii)
        steps = [memory.solve(g) for g, memory in zip(grads, memories)]
        return NewtonSteps(grads, steps, [len(memory.s) for memory in memories])


def _set_flat(params: Sequence[nn.Parameter], origin: Sequence[torch.Tensor], flat: torch.Tensor) -> None:
    """θ = θ₀ + flat, the flat vector split over `params` in place (memory formats kept)."""
    start = 0
    for p, p0 in zip(params, origin):
        p.copy_(p0 + flat[start:start + p.numel()].view(p.shape).to(p.dtype))
        start += p.numel()


def relative_norms(vectors: Sequence[torch.Tensor], model: nn.Module, layers: Sequence[Layer]) -> list[float]:
    """‖v_l‖₂ / ‖θ_l‖₂ per layer (‖θ_l‖ floored at 1e-12)."""
    theta = torch.stack([torch.linalg.vector_norm(_flat(group)) for group in _layer_params(model, layers)])
    v = torch.stack([torch.linalg.vector_norm(vec) for vec in vectors]).to(theta.device)
    return (v / theta.clamp_min(1e-12)).cpu().tolist()


def to_multipliers(scores: Sequence[float], method: str) -> list[float]:
    """Scores divided by the largest (top layer 1); all-zero scores give all ones (full fine-tuning)."""
    if not all(torch.isfinite(torch.as_tensor(list(scores), dtype=torch.float64))):
        raise NonFiniteError(f"{method}: a layer's score is infinite or NaN: the loss or its gradient overflowed "
                             "(the model's weights or the data hold very large values; during fine-tuning this "
                             "means the run diverged: lower --lr)")
    weights = normalise_by_max(scores)
    return weights if max(weights, default=0.0) > 0 else [1.0] * len(weights)


def _every_param(default: str) -> Param:
    return Param(default, "when the multipliers are recomputed: each epoch, once before training, or each step",
                 EVERY)


def rgn_params(every: str, batches: int) -> dict[str, Param]:
    """The parameters every relative-norm method has."""
    return {"batches": Param(batches, "minibatches the gradients are averaged over", minimum=1, maximum=10_000),
            "batch_size": Param(64, "images per minibatch", minimum=1, maximum=65_536),
            "every": _every_param(every)}


def lbfgs_params() -> dict[str, Param]:
    """The extra parameters of the Hessian variants."""
    return {"pairs": Param(5, "L-BFGS curvature pairs m collected per layer (0: no curvature, plain gradient)",
                            minimum=0, maximum=100),
            "step": Param(0.01, "length of each curvature probe, relative to the layer's weight norm",
                          minimum=1e-8, maximum=1.0)}


class RelativeNormMethod(Method):
    """Scores ‖v_l‖/‖θ_l‖ for a per-layer vector v_l the subclass defines; multipliers = scores / max.

    `weights` scores the given model on seeded probe minibatches; the reweighter rescores the model
    being fine-tuned each epoch (epoch k uses seed + k − 1, so epoch 1 reproduces `weights`) or each
    step (on the coming training minibatch), unless `every` is "once".
    """

    uses_source: ClassVar[bool] = False

    @abstractmethod
    def _vectors(self, model: nn.Module, layers: Sequence[Layer], probe: Probe,
                params: dict[str, Any]) -> tuple[list[torch.Tensor], dict[str, Any]]:
        """The per-layer vectors v_l whose relative norms are the scores, and extras worth showing."""

    def _score(self, model: nn.Module, layers: Sequence[Layer], probe: Probe, params: dict[str, Any]) -> LayerWeights:
        """Scores and multipliers of `model` on `probe`."""
        vectors, extras = self._vectors(model, layers, probe, params)
        scores = relative_norms(vectors, model, layers)
        return LayerWeights(scores=scores, weights=to_multipliers(scores, self.name), extras=extras)

    def _probe(self, ctx: MethodContext, params: dict[str, Any], call: int, batch: Batch | None = None) -> Probe:
        """The minibatches of call number `call` (0: `weights`); a given `batch` replaces the target ones."""
        seed = ctx.seed + call
        n, size = (1, len(batch[1])) if batch is not None else (params["batches"], params["batch_size"])
        target = [batch] if batch is not None else probe_batches(ctx.data.train, n, size, seed)
        source = probe_batches(ctx.data.source, n, size, seed) if self.uses_source else None
        return Probe(target, source)

    def weights(self, ctx: MethodContext) -> LayerWeights:
        params = self.resolve_params(ctx.params)
        ctx.note(f"{self.name}: gradients on {params['batches']} minibatches")
        return self._score(ctx.model, ctx.layers, self._probe(ctx, params, 0), params)

    def reweighter(self, ctx: MethodContext) -> ProbeReweighter | None:
        params = self.resolve_params(ctx.params)
        return None if params["every"] == "once" else ProbeReweighter(self, ctx, params)


class ProbeReweighter:
    """The fine-tuning loop's hook: rescores the current model each epoch or step."""

    def __init__(self, method: RelativeNormMethod, ctx: MethodContext, params: dict[str, Any]) -> None:
        self.every = params["every"]
        self.method, self.ctx, self.params = method, ctx, params
        self.calls = 0

    def __call__(self, model: nn.Module, batch: Batch | None) -> list[float]:
        call = self.calls if self.every == "epoch" else self.calls + 1
        self.calls += 1
        probe = self.method._probe(self.ctx, self.params, call, batch if self.every == "step" else None)
        return self.method._score(model, self.ctx.layers, probe, self.params).weights
