"""Turn a module into an identity map (in eval mode), in place: what criticality-identity puts in a
layer's place, and what a module with an identity of its own (a ViT's patch embedding) is built from."""
from __future__ import annotations

from torch import nn


def identity_(module: nn.Module) -> None:
    """A conv (`dirac_`: the identity on the channels both sides share), linear (`eye_`), BatchNorm or
    LayerNorm becomes x -> x (a LayerNorm keeps its normalisation); biases 0; a module with an
    `autoft_identity_()` of its own uses that."""
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
        raise ValueError(f"no identity map for a {type(module).__name__} module")
    if getattr(module, "bias", None) is not None:
        module.bias.zero_()


def _batchnorm_identity_(bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Eval-mode BatchNorm that returns its input: (x - 0) / sqrt((1 - eps) + eps) * 1 + 0."""
    if bn.weight is not None:
        bn.weight.fill_(1.0)
    if bn.running_mean is not None:
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
