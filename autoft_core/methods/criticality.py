"""Module criticality (Chatterji, Neyshabur & Sedghi, ICLR 2020, "The intriguing role of module
criticality in the generalization of deep networks"); the seed paper's Sec. 4.4 (the I_V score) and its
Algorithms 3 and 4.

A layer is critical when taking it out hurts: for each layer l,

    s_l = L(θ with layer l replaced) − L(θ),
    alpha_l from max(s_l, 0) by `scale` (default mean) for the K layers with the largest s_l, 0 for the others,

where L is the mean cross-entropy on a fixed sample and the scores s_l are reported raw. The score is
the seed paper's I_V(f_l → f), the loss increase; its Algorithms 3 and 4 write w_l ← L(f', D_src) and
alpha_l ← alpha · w_l, the loss itself. Both rank the layers alike (the same top K); they differ in the
multipliers (the increase leaves out the shared L(θ), so `mean` spreads the budget by what each layer
adds) and in a layer whose removal changes nothing, which scores 0 here (so is frozen even with
`topk` all) and L(θ) > 0 there. Choices the paper leaves open (Chatterji et al. study
re-initialisation to θ⁰ and interpolations towards it), and where this departs from the algorithms:

- replacement, two methods: `criticality-identity` turns every module of the layer into an identity
  map (conv: `dirac_`, the identity on the channels both sides share, so c_in ≠ c_out and strides
  work too; linear: `eye_`; biases 0), and its BatchNorm too (weight 1, bias 0, running mean 0,
  running variance 1 − eps, so that eval-mode normalisation divides by √(var + eps) = 1 to float
  precision): the whole layer becomes x ↦ x, and a layer that already is one scores exactly 0; a
  LayerNorm keeps its normalisation (weight 1, bias 0), a module with its own identity map says so
  (`autoft_identity_()`, e.g. a ViT's patch embedding), and a residual branch (a Transformer block's
  attention or MLP, `Layer.residual`) is skipped: all its parameters 0, so x + f(x) = x.
  `criticality-random` re-draws the layer's conv / linear weights from He et al.'s (2015) Kaiming
  normal, N(0, 2 / fan_in) (the paper's "Kaiming Initialization"; a fresh draw stands in for the
  unknown θ⁰, and fan_in serves every model: a model's own initialiser, e.g. torchvision ResNets'
  fan_out, is not recorded with its weights), biases 0, while its BatchNorm parameters and running
  statistics stay as pretrained; s_l is the mean over `draws` (default 3) draws, every random number from a local
  torch.Generator seeded by (run seed, layer index), never the global RNG;
- loss sample: `samples` examples (default 512; 0: all) of one seeded sample, all probes in eval mode
  (BatchNorm uses running statistics), fp32 without autocast (on a GPU too) and without gradients;
  the unchanged prefix of the network runs once and each probe only from the stage holding the layer
  (`_probes.LayerProbe`);
- Algorithm 3 (`partial_epochs` = 0, the default): the sample is drawn from the SOURCE data;
- Algorithm 4 (`partial_epochs` = e > 0): first all layers are fine-tuned for e epochs on the target
  with the run's recipe, then the probes measure the loss on the TARGET training split, then the
  fine-tuning is rolled back. This departs from the algorithm's text, which measures L(f', D_src)
  after the partial fine-tuning too: the algorithm is "Module Criticality on Target Set", and on the
  source data the partially fine-tuned model's loss would mostly track what it forgot. The paper (end of
  Sec. 4.4) tuned between 0 and 5 epochs and kept the count whose weights gave the best validation
  accuracy, per task (0 won on the feature level, Sec. 6.2.2); here one run uses one `partial_epochs`,
  and choosing it on validation is a grid run over 0-5 (`grid --method criticality-identity`, the
  dashboard's criticality grid), not part of the method;
- top K (`topk`, default 0 = all layers, which the paper found best: "We found tuning all layers
  best"): the K largest s_l (ties: the earlier layer) keep their scaled
  weight, so at most K multipliers are non-zero (a kept layer with s_l ≤ 0 still gets 0; when no
  kept layer has s_l > 0 every multiplier is 1, full fine-tuning); a non-finite s_l (the loss blew up)
  counts as the largest increase that keeps the scores' sum finite (the largest double over the layer
  count), so such layers share the budget; K beyond the layer count keeps all;
- `scale`: default `mean` (the multipliers average 1; with top K the budget goes to the K kept
  layers). Measured on digits (test accuracy %, seeds 0-2, `bench/method_checks.py scales`): identity
  on the label flip max 60.2 / raw 89.9 / mean 86.5 (full 85.7), on frost 5 with 100 shots max 89.9 /
  raw 80.1 / mean 92.5 (full 92.1); random max 83.5 / raw 83.7 / mean 89.3 and max 89.4 / raw 13.1 /
  mean 91.3: raw depends on the loss scale (random re-draws raise it by several nats), max freezes
  most layers when one layer dominates, mean is the best or within noise of it on both tasks.

The model is restored bit for bit after every probe and after the partial fine-tuning.
"""
from __future__ import annotations

from abc import abstractmethod
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..finetune import finetune
from ..models.identity import identity_
from ._common import restored
from ._probes import LayerProbe, probe_sample
from ._scale import scale_param, scaled
from .base import LayerWeights, Method, MethodContext, Param

_PARAMS = {
    "topk": Param(0, "keep the K most critical layers, freeze the rest (0 or 'all': every layer)",
                  minimum=0, maximum=10_000, all_means=0, grid=(1, 2, 4, 0)),
    "samples": Param(512, "examples in the fixed, seeded probe sample (0 or all: all; source, or target train "
                          "when partial_epochs > 0)", minimum=0, all_means=0),
    "partial_epochs": Param(0, "fine-tune all layers this many epochs on the target before probing (Algorithm 4)",
                            choices=(0, 1, 2, 3, 4, 5), grid=(0, 1, 2, 3, 4, 5)),
    "scale": scale_param("mean"),
}


def top_k(scores: list[float], k: int) -> list[float]:
    """The k highest scores kept (ties: the earlier layer), the others 0; k = 0: all."""
    keep = set(sorted(range(len(scores)), key=lambda i: -scores[i])[:k or len(scores)])
    return [s if i in keep else 0.0 for i, s in enumerate(scores)]


def _finite(values: list[float]) -> list[float]:
    """Non-finite loss increases become the largest double over the layer count (the most critical layers:
    any sum or mean of the scores, as `scale` takes, stays finite however many layers blew up)."""
    big = torch.finfo(torch.float64).max / max(len(values), 1)
    return torch.nan_to_num(torch.tensor(values, dtype=torch.float64), nan=big, posinf=big, neginf=-big).tolist()


class _ModuleCriticality(Method):
    """Shared procedure; subclasses say how a layer's modules are replaced."""

    params = _PARAMS

    @abstractmethod
    def layer_loss(self, probe: LayerProbe, index: int, ctx: MethodContext, params: dict[str, Any]) -> torch.Tensor:
        """The probe sample's loss with layer `index` replaced (on the device)."""

    def weights(self, ctx: MethodContext) -> LayerWeights:
        params = self.resolve_params(ctx.params)
        epochs, mode = params["partial_epochs"], ctx.model.training
        try:
            with restored(ctx.model) if epochs else nullcontext():
                if epochs:
                    ctx.note(f"{self.name}: {epochs} partial fine-tuning epoch(s)")
                    finetune(ctx.model, ctx.layers, [1.0] * len(ctx.layers), ctx.data,
                             replace(ctx.recipe, epochs=epochs), ctx.seed, ctx.device)
                split = ctx.data.train if epochs else ctx.data.source
                sample = probe_sample(split, params["samples"], ctx.seed)
                ctx.note(f"{self.name}: probing {len(ctx.layers)} layers")
                probe = LayerProbe(ctx.model, ctx.layers, sample)
                losses = [self.layer_loss(probe, i, ctx, params) for i in range(len(ctx.layers))]
                base, *losses = torch.stack([probe.base, *losses]).double().cpu().tolist()
        finally:
            ctx.model.train(mode)
        scores = _finite([loss - base for loss in losses])
        weights, fallback = scaled(top_k(scores, params["topk"]), params["scale"], self.name)
        return LayerWeights(scores=scores, weights=weights,
                            extras={"base_loss": base, "losses": _finite(losses), "all_zero_fallback": fallback,
                                    "probe_data": "target train" if epochs else "source", "samples": len(sample)})


class IdentityCriticality(_ModuleCriticality):
    """Module criticality (Chatterji et al. 2020), each layer replaced by the identity map."""

    name = "criticality-identity"
    summary = "Module criticality (Chatterji et al. 2020): loss increase when a layer becomes the identity."
    order = 30

    def layer_loss(self, probe: LayerProbe, index: int, ctx: MethodContext, params: dict[str, Any]) -> torch.Tensor:
        if ctx.layers[index].residual:  # skip the branch: all its parameters 0, so its output is 0
            return probe.edited_loss(index, lambda modules: [p.zero_() for m in modules for p in m.parameters()])
        return probe.edited_loss(index, lambda modules: [identity_(module) for module in modules])


class RandomCriticality(_ModuleCriticality):
    """Module criticality (Chatterji et al. 2020), each layer re-drawn from Kaiming normal (mean over draws)."""

    name = "criticality-random"
    summary = "Module criticality (Chatterji et al. 2020): loss increase when a layer is re-initialised."
    params = {**_PARAMS, "draws": Param(3, "Kaiming-normal re-draws averaged per layer", minimum=1)}
    order = 31

    def layer_loss(self, probe: LayerProbe, index: int, ctx: MethodContext, params: dict[str, Any]) -> torch.Tensor:
        device = probe.sample.x.device
        generator = torch.Generator(device=device).manual_seed(ctx.seed * 1_000_003 + index)
        draws = [probe.edited_loss(index, lambda modules: _kaiming_(modules, generator))
                 for _ in range(params["draws"])]
        return torch.stack(draws).mean()


def _kaiming_(modules: list[nn.Module], generator: torch.Generator) -> None:
    """Conv / linear weights from N(0, 2 / fan_in) (He et al. 2015), biases 0; BatchNorm left as it is."""
    for module in modules:
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu", generator=generator)
            if module.bias is not None:
                module.bias.zero_()
