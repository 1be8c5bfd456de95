"""Helpers shared by the relative-gradient-norm methods (auto-rgn and its Hessian / change variants).

Every such method scores layer l by ‖v_l‖₂ / ‖θ_l‖₂ for some per-layer vector v_l built from the
gradient of the mean cross-entropy over a fixed, seeded probe sample: the gradient g itself, the
damped Newton step (C_l + λ_l I)⁻¹g_l (`_curvature`), or a target-minus-source difference of either.
The probe sample is `batches` × `batch_size` examples of one seeded permutation (`batches` = 0 or
"all": the whole split, the exact gradient), evaluated as one batch (in chunks of `_curvature.GRAD_CHUNK`
examples when larger): in eval mode the loss is a plain mean over examples, so this equals the average
of the minibatch gradients. Gradients are fp32 without autocast (`_common.full_precision`), the model
in eval mode (BatchNorm statistics never move) and left exactly as it was. `RelativeNormMethod` is the
base class whose subclasses only say (in `_vectors`) which v_l they measure.

Newton steps are remembered in the process (`layer_newton_steps`), keyed by the model's state, the
sample's contents, the layers and the solver's parameters: +hessian+change's source step is the same
for every target of one source model and seed (15 of the digits setup's 16 tasks per seed), and
+hessian and +hessian+change solve the same target step on a task. The untouched source model's source
step is also kept on disk (`_steps_on_disk`), so other processes reuse it.
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..core.data import Split
from ..digest import model_digest, tensor_digest
from ..layers import Layer, layer_parameters
from ..memo import Remembered
from . import _steps_on_disk
from ._common import full_precision, probe_mode, seeded_sample
from ._curvature import MIN_DAMPING, CURVATURES, NewtonSteps, mean_gradients, newton_steps
from ._local_curvature import curvature
from ._scale import scale_param, scaled, scaled_tensor
from .base import LayerWeights, Method, MethodContext, Param

Batch = tuple[torch.Tensor, torch.Tensor]
EVERY = ("epoch", "once", "step")
REMEMBERED_STEPS = 4  # Newton-step solutions kept (each holds two model-sized vectors)

_steps: Remembered[NewtonSteps] = Remembered(REMEMBERED_STEPS)


@dataclass(frozen=True)
class Probe:
    """The fixed sample one score is computed on: target always, source for the change variants."""

    target: Split
    source: Split | None = None
    untouched: bool = False  # the model is the pretrained one (the first call): its source step is kept


def layer_gradients(model: nn.Module, layers: Sequence[Layer], sample: Split) -> list[torch.Tensor]:
    """∇θ_l of the mean loss over `sample`, one flat fp32 vector per layer; the model is left as it was."""
    with probe_mode(model), full_precision():
        return mean_gradients(model, layer_parameters(model, layers), sample)


def layer_newton_steps(model: nn.Module, layers: Sequence[Layer], sample: Split,
                       params: dict[str, Any], keep_on_disk: bool = False) -> NewtonSteps:
    """Damped per-layer Newton steps on `sample` with a method's curvature / iterations / damping;
    remembered (module doc), so the result is shared: read it, never change it in place. `keep_on_disk`:
    also read and write it on disk (worth it for a step every target of the model shares)."""
    solver = (params["curvature"], params["iterations"], params["damping"])
    device = next(model.parameters()).device
    key = (model_digest(model), tensor_digest(sample.x), tensor_digest(sample.y),
           tuple((layer.name, layer.param_names) for layer in layers), solver, device.type)
    steps = _steps.get(key)
    if steps is not None:
        return steps
    params_by_layer = layer_parameters(model, layers)
    if keep_on_disk:
        steps = _steps_on_disk.load(key, [sum(p.numel() for p in group) for group in params_by_layer], device)
    if steps is None:
        with probe_mode(model), full_precision():
            steps = newton_steps(curvature(model, params_by_layer, sample, solver[0]), *solver[1:])
        if keep_on_disk:
            _steps_on_disk.save(key, steps)
    _steps.put(key, steps)
    return steps


def clear_newton_steps(on_disk: bool = False) -> None:
    """Forget every remembered Newton step, and with `on_disk` the kept ones too (benchmarks time a
    method's first run)."""
    _steps.clear()
    if on_disk:
        _steps_on_disk.forget()


def norms(vectors: Sequence[torch.Tensor]) -> list[float]:
    """‖v‖₂ of each vector in float64, as Python floats (one host sync)."""
    return layer_norms([[v] for v in vectors]).tolist()


def newton_table(layers: Sequence[Layer], steps: NewtonSteps, prefix: str = "") -> list[dict[str, Any]]:
    """The per-layer solver diagnostics of `steps`, keys prefixed (e.g. "source_")."""
    return [{"layer": layer.name, **{prefix + k: v for k, v in d.items()}}
            for layer, d in zip(layers, steps.diagnostics)]


def relative_norms(vectors: Sequence[Sequence[torch.Tensor]],
                   params: Sequence[Sequence[nn.Parameter]]) -> list[float]:
    """‖v_l‖₂ / ‖θ_l‖₂ per layer as Python floats (one host read): see `relative_norm_tensor`."""
    return relative_norm_tensor(vectors, params).cpu().tolist()


def relative_norm_tensor(vectors: Sequence[Sequence[torch.Tensor]],
                         params: Sequence[Sequence[nn.Parameter]]) -> torch.Tensor:
    """‖v_l‖₂ / ‖θ_l‖₂ per layer, float64 on the parameters' device, v_l given as its tensors (a flat
    vector, or the layer's gradients) and θ_l as the layer's parameters (‖θ_l‖ floored at 1e-12)."""
    theta = layer_norms(params)
    return layer_norms(vectors).to(theta.device) / theta.clamp_min(1e-12)


def layer_norms(groups: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """The float64 norm of each group's tensors laid end to end, each read in memory order (a channels-last
    convolution is not copied): one concatenation, one cast and one multi-tensor norm for all groups (a few
    kernel launches on CUDA, not three per layer, nor a copy per channels-last tensor)."""
    pieces = [_in_memory_order(t.detach()) for group in groups for t in group]
    if not pieces:
        return torch.zeros(len(groups), dtype=torch.float64)
    whole = torch.cat(pieces).double()
    return torch.stack(torch._foreach_norm(list(whole.split([sum(t.numel() for t in group) for group in groups]))))


def _in_memory_order(t: torch.Tensor) -> torch.Tensor:
    """`t`'s entries as a 1-D view in the order they lie in memory (a channels-last tensor is not copied, as
    `reshape(-1)` would); `t` must be dense, as parameters and their gradients are."""
    order = sorted(range(t.dim()), key=lambda d: -t.stride(d))
    return t.permute(order).reshape(-1)


def rgn_params(every: str, batches: int, scale: str) -> dict[str, Param]:
    """The parameters every relative-norm method has."""
    return {"batches": Param(batches, "minibatches in the probe sample (0 or 'all': the whole split)", minimum=0,
                             maximum=10_000, all_means=0),
            "batch_size": Param(64, "images per minibatch", minimum=1, maximum=65_536),
            "every": Param(every, "when the multipliers are recomputed: each epoch, once before training, "
                                  "or each step (auto-rgn: from the step's own gradient)", EVERY),
            "scale": scale_param(scale)}


def newton_params() -> dict[str, Param]:
    """The parameters of both Hessian variants with their defaults (module docs of auto_rgn_hessian and
    auto_rgn_hessian_change): the same solver settings, so one target solve serves both (`layer_newton_steps`)."""
    return {**rgn_params(every="once", batches=1, scale="mean"),
            "curvature": Param("hessian", "per-layer curvature block: exact hessian, or gauss-newton "
                                          "(positive semi-definite, = Fisher)", CURVATURES),
            "iterations": Param(5, "Lanczos / conjugate-gradient steps per layer", minimum=1),
            "damping": Param(0.1, "Levenberg-Marquardt damping, relative to the layer's largest "
                                  "curvature (> 0: undamped, an indefinite block's shifted "
                                  "curvature is singular)", minimum=MIN_DAMPING)}


class RelativeNormMethod(Method):
    """Scores ‖v_l‖/‖θ_l‖ for a per-layer vector v_l the subclass defines; multipliers by `scale`.

    `weights` scores the given model on the seeded probe sample; the reweighter rescores the model
    being fine-tuned each epoch (epoch k uses seed + k − 1; epoch 1 would reproduce `weights`, the same
    model on the same sample, so it takes those weights instead of computing them again) or each step,
    unless `every` is "once". Each step: a method whose v_l is the target gradient itself
    (`scores_gradient`) reads the step's own training gradient (`GradientReweighter`: no extra pass);
    the others rescore on the coming training minibatch.
    """

    uses_source: ClassVar[bool] = False
    scores_gradient: ClassVar[bool] = False  # v_l is the target gradient: a training step's own serves

    @abstractmethod
    def _vectors(self, model: nn.Module, layers: Sequence[Layer], probe: Probe,
                 params: dict[str, Any]) -> tuple[list[torch.Tensor], dict[str, Any]]:
        """The per-layer vectors v_l whose relative norms are the scores, and extras worth showing."""

    def _score(self, model: nn.Module, layers: Sequence[Layer], probe: Probe, params: dict[str, Any]) -> LayerWeights:
        """Scores and multipliers of `model` on `probe`."""
        vectors, extras = self._vectors(model, layers, probe, params)
        scores = relative_norms([[v] for v in vectors], layer_parameters(model, layers))
        weights, fallback = scaled(scores, params["scale"], self.name)
        return LayerWeights(scores=scores, weights=weights,
                            extras={**extras, "scale": params["scale"], "all_zero_fallback": fallback})

    def _probe(self, ctx: MethodContext, params: dict[str, Any], call: int, batch: Batch | None = None) -> Probe:
        """The sample of call number `call` (0: `weights`); a given `batch` replaces the target one."""
        seed = ctx.seed + call
        size = params["batches"] * params["batch_size"]
        if batch is not None:
            size, target = len(batch[1]), Split(*batch)
        else:  # all of it (batches = 0) in its own order: the exact gradient, no sampling
            target = seeded_sample(ctx.data.train, size, seed) if size else ctx.data.train
        source = (seeded_sample(ctx.data.source, size, seed) if size else ctx.data.source) if self.uses_source else None
        return Probe(target, source, untouched=call == 0)

    def weights(self, ctx: MethodContext) -> LayerWeights:
        params = self.resolve_params(ctx.params)
        probe = self._probe(ctx, params, 0)
        ctx.note(f"{self.name}: gradients on {len(probe.target)} examples")
        return self._score(ctx.model, ctx.layers, probe, params)

    def reweighter(self, ctx: MethodContext, chosen: LayerWeights) -> ProbeReweighter | GradientReweighter | None:
        params = self.resolve_params(ctx.params)
        if params["every"] == "once":
            return None
        if params["every"] == "step" and self.scores_gradient:
            return GradientReweighter(ctx.layers, params["scale"], chosen.weights)
        return ProbeReweighter(self, ctx, params, chosen.weights)


class ProbeReweighter:
    """The fine-tuning loop's hook: rescores the current model each epoch or step (the first epoch takes
    `first`, the weights `weights` computed for the untouched model on the same sample)."""

    def __init__(self, method: RelativeNormMethod, ctx: MethodContext, params: dict[str, Any],
                 first: Sequence[float]) -> None:
        self.every = params["every"]
        self.method, self.ctx, self.params = method, ctx, params
        self.first = list(first)
        self.calls = 0

    def __call__(self, model: nn.Module, batch: Batch | None) -> list[float]:
        call = self.calls if self.every == "epoch" else self.calls + 1
        self.calls += 1
        if call == 0:  # epoch 1: the untouched model on the sample `weights` scored
            return list(self.first)
        probe = self.method._probe(self.ctx, self.params, call, batch if self.every == "step" else None)
        return self.method._score(model, self.ctx.layers, probe, self.params).weights


class GradientReweighter:
    """The fine-tuning loop's hook for `every=step` when v_l is the target gradient: each update's
    multipliers from that update's own training gradient, read from .grad between the backward pass and
    the step (the seed paper, Sec. 4.1: "at each fine-tuning step"). No extra forward or backward
    pass, and no host read: the multipliers stay a device tensor that the optimizer's fused steps take as
    their rates (optim.py), computed by a handful of kernel launches for all layers (`layer_norms`). A layer
    without a gradient (frozen by the first multipliers) scores 0 and stays frozen; a layer whose gradient
    is exactly 0 gets multiplier 0 under `max` (a zero rate) and trains again once its gradient returns.
    Non-finite scores (a blown-up step) keep the previous multipliers (at first `first`, the run's starting
    ones): the non-finite gradient itself breaks the weights, and the loop's per-epoch finiteness check ends
    the run as diverged."""

    every = "gradient"

    def __init__(self, layers: Sequence[Layer], scale: str, first: Sequence[float]) -> None:
        self.layers, self.scale = list(layers), scale
        self._params: tuple[nn.Module, list[list[nn.Parameter]]] | None = None
        self._last = torch.tensor(list(first), dtype=torch.float64)

    def __call__(self, model: nn.Module, batch: Batch | None = None) -> torch.Tensor:
        if self._params is None or self._params[0] is not model:  # looked up once: a lookup walks the model
            self._params = (model, layer_parameters(model, self.layers))
        params = self._params[1]
        grads = [[p.grad if p.grad is not None else torch.zeros_like(p) for p in group] for group in params]
        scores = relative_norm_tensor(grads, params)
        self._last = self._last.to(scores.device)  # a no-op after the first step
        self._last = multipliers = torch.where(torch.isfinite(scores).all(), scaled_tensor(scores, self.scale),
                                               self._last)
        return multipliers
