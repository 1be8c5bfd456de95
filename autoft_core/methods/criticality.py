"""Module criticality (Chatterji, Neyshabur & Sedghi, ICLR 2020, "The intriguing role of module
criticality in the generalization of deep networks"); the seed's Algorithms 3 and 4.

A layer is critical when taking it out hurts: for each layer l,

    s_l = L(θ with layer l replaced) − L(θ),
    alpha_l = max(s_l, 0) / max_k max(s_k, 0)  for the K layers with the largest s_l,  0 for the others,

where L is the mean cross-entropy on a fixed sample and the scores s_l are reported raw. Choices the
paper leaves open (it studies re-initialisation to θ⁰ and interpolations towards it):

- replacement, two methods: `criticality-identity` turns every module of the layer into an identity
  map (conv: `dirac_`, the identity on the channels both sides share, so c_in ≠ c_out and strides
  work too; linear: `eye_`; biases 0), and its BatchNorm too (weight 1, bias 0, running mean 0,
  running variance 1 − eps, so that eval-mode normalisation divides by √(var + eps) = 1 to float
  precision): the whole layer becomes x ↦ x, and a layer that already is one scores exactly 0; a
  LayerNorm keeps its normalisation (weight 1, bias 0), a module with its own identity map says so
  (`autoft_identity_()`, e.g. a ViT's patch embedding), and a residual branch (a Transformer block's
  attention or MLP, `Layer.residual`) is skipped: all its parameters 0, so x + f(x) = x.
  `criticality-random` re-draws every module of the layer from its own
  default initialisation (`reset_parameters()`: Kaiming-uniform convs / linears, BatchNorm back to
  1, 0 with fresh running statistics), seeded by (run seed, layer index), as a fresh draw stands in
  for the unknown θ⁰;
- loss sample: `samples` examples (default 512; 0: all) of one seeded sample, all probes in eval mode
  (BatchNorm uses running statistics) and without gradients;
- Algorithm 3 (`partial_epochs` = 0): the sample is drawn from the SOURCE data;
- Algorithm 4 (`partial_epochs` = e > 0): first all layers are fine-tuned for e epochs on the target
  with the run's recipe, then the probes measure the loss on the TARGET training split (the data the
  partially fine-tuned model now fits; its source loss would mostly track forgetting), then the
  fine-tuning is rolled back;
- top K (`topk`, 0 = all layers): the K largest s_l (ties: the earlier layer) keep their normalised
  weight, so at most K multipliers are non-zero (a kept layer with s_l ≤ 0 still gets 0); a non-finite
  s_l (the loss blew up) counts as the largest possible increase; K beyond the layer count keeps all.

The model is restored bit for bit after every probe and after the partial fine-tuning.
"""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import replace

import torch
from torch import nn

from ..finetune import finetune
from ._common import normalise_by_max, restored
from ._probes import probe_losses, probe_sample
from .base import LayerWeights, Method, MethodContext, Param

_PARAMS = {
    "topk": Param(0, "keep the K most critical layers, freeze the rest (0 or 'all': every layer)",
                  minimum=0, maximum=10_000, all_means=0, grid=(1, 2, 4, 0)),
    "samples": Param(512, "examples in the fixed, seeded probe sample (0 or all: all; source, or target train "
                          "when partial_epochs > 0)", minimum=0, all_means=0),
    "partial_epochs": Param(0, "fine-tune all layers this many epochs on the target before probing (Algorithm 4)",
                            choices=(0, 1, 2, 3, 4, 5), grid=(0, 1, 2, 3, 4, 5)),
}


def top_k_weights(scores: list[float], k: int) -> list[float]:
    """Multipliers: the k highest scores normalised by the largest (negatives 0), the rest 0; k = 0: all."""
    keep = set(sorted(range(len(scores)), key=lambda i: -scores[i])[:k or len(scores)])
    return normalise_by_max([s if i in keep else 0.0 for i, s in enumerate(scores)])


def _finite(values: list[float]) -> list[float]:
    """Non-finite loss increases become the largest double (the most critical layer)."""
    big = torch.finfo(torch.float64).max
    return torch.nan_to_num(torch.tensor(values, dtype=torch.float64), nan=big, posinf=big, neginf=-big).tolist()


class _ModuleCriticality(Method):
    """Shared procedure; subclasses say how a layer's modules are replaced."""

    params = _PARAMS

    @abstractmethod
    def replace_layer(self, modules: list[nn.Module], layer_index: int, ctx: MethodContext) -> None:
        """Replace the modules of layer `layer_index` in place."""

    def weights(self, ctx: MethodContext) -> LayerWeights:
        topk, samples, epochs = ctx.params["topk"], ctx.params["samples"], ctx.params["partial_epochs"]
        with restored(ctx.model):
            if epochs:
                ctx.note(f"{self.name}: {epochs} partial fine-tuning epoch(s)")
                finetune(ctx.model, ctx.layers, [1.0] * len(ctx.layers), ctx.data,
                         replace(ctx.recipe, epochs=epochs), ctx.seed, ctx.device)
            split = ctx.data.train if epochs else ctx.data.source
            sample = probe_sample(split, samples or len(split), ctx.seed)
            ctx.note(f"{self.name}: probing {len(ctx.layers)} layers")
            base, losses = probe_losses(ctx.model, ctx.layers, sample,
                                        lambda modules, index: self.replace_layer(modules, index, ctx))
        scores = _finite([loss - base for loss in losses])
        return LayerWeights(scores=scores, weights=top_k_weights(scores, topk),
                            extras={"base_loss": base, "losses": _finite(losses),
                                    "probe_data": "target train" if epochs else "source", "samples": len(sample)})


class IdentityCriticality(_ModuleCriticality):
    """Module criticality (Chatterji et al. 2020), each layer replaced by the identity map."""

    name = "criticality-identity"
    summary = "Module criticality (Chatterji et al. 2020): loss increase when a layer becomes the identity."
    order = 30

    def replace_layer(self, modules: list[nn.Module], layer_index: int, ctx: MethodContext) -> None:
        if ctx.layers[layer_index].residual:  # skip the branch: its output becomes 0
            for p in ctx.layers[layer_index].parameters(ctx.model):
                p.zero_()
            return
        for module in modules:
            _identity_(module)


def _identity_(module: nn.Module) -> None:
    """Make a conv, linear or BatchNorm module an identity map (in eval mode); biases 0."""
    if hasattr(module, "autoft_identity_"):
        module.autoft_identity_()
        return
    if isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            nn.init.ones_(module.weight)
    elif isinstance(module, nn.modules.conv._ConvNd):
        nn.init.dirac_(module.weight, groups=module.groups)
    elif isinstance(module, nn.Linear):
        nn.init.eye_(module.weight)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        _batchnorm_identity_(module)
    else:
        raise ValueError(f"criticality-identity: no identity for a {type(module).__name__} module")
    if getattr(module, "bias", None) is not None:
        module.bias.zero_()


def _batchnorm_identity_(bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Eval-mode BatchNorm that returns its input: (x - 0) / sqrt((1 - eps) + eps) * 1 + 0."""
    if bn.weight is not None:
        bn.weight.fill_(1.0)
    if bn.running_mean is not None:
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)


class RandomCriticality(_ModuleCriticality):
    """Module criticality (Chatterji et al. 2020), each layer re-drawn from its default initialisation."""

    name = "criticality-random"
    summary = "Module criticality (Chatterji et al. 2020): loss increase when a layer is re-initialised."
    order = 31

    def replace_layer(self, modules: list[nn.Module], layer_index: int, ctx: MethodContext) -> None:
        devices = [ctx.device] if ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(ctx.seed * 10_000 + layer_index)
            for module in modules:
                if not hasattr(module, "reset_parameters"):
                    raise ValueError(f"criticality-random: a {type(module).__name__} module has no reset_parameters()")
                module.reset_parameters()
