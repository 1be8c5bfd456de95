"""Model-agnostic layer partition: the units that each get one learning-rate multiplier alpha_l.

`module` granularity: every Conv2d / Linear is a layer, and the parameterised modules that follow it
(its BatchNorm) share its multiplier. `block` granularity: Lee et al.'s (2023) blocks, e.g. WRN
stem+block1, block2, block3, head. Layers are ordered input -> output (module registration order,
which is the forward order for the supported architectures).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .core.recipe import GRANULARITIES
from .errors import BadArgumentError
from .models.adapters import adapter_for

_STARTS_LAYER = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class Layer:
    """A named group of modules sharing a multiplier; `param_names` index `model.named_parameters()`."""

    name: str
    module_names: tuple[str, ...]
    param_names: tuple[str, ...]

    def parameters(self, model: nn.Module) -> list[nn.Parameter]:
        named = dict(model.named_parameters())
        return [named[n] for n in self.param_names]


def _parameterised_leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that own parameters directly, in registration order."""
    return [(name, m) for name, m in model.named_modules()
            if any(True for _ in m.parameters(recurse=False))]


def _own_param_names(name: str, module: nn.Module) -> list[str]:
    prefix = f"{name}." if name else ""
    return [prefix + p for p, _ in module.named_parameters(recurse=False)]


def block_spec(model: nn.Module) -> list[tuple[str, tuple[str, ...]]]:
    """Lee et al.'s blocks as (block name, module-name prefixes), from the model's adapter."""
    return adapter_for(model).blocks(model)


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def partition(model: nn.Module, granularity: str = "module") -> list[Layer]:
    """Split the model's parameters into ordered layers; every parameter lands in exactly one."""
    if granularity not in GRANULARITIES:
        raise BadArgumentError("granularity", granularity, GRANULARITIES)
    leaves = _parameterised_leaves(model)
    if granularity == "module":
        groups: list[tuple[str, list[str], list[str]]] = []
        pending: list[str] = []  # parameterised modules before the first conv join the first layer
        for name, module in leaves:
            if isinstance(module, _STARTS_LAYER):
                groups.append((name, [*pending, name], []))
                pending = []
            elif groups:
                groups[-1][1].append(name)
            else:
                pending.append(name)
        modules = dict(leaves)
        groups = [(n, mods, [p for m in mods for p in _own_param_names(m, modules[m])]) for n, mods, _ in groups]
        return [Layer(n, tuple(mods), tuple(params)) for n, mods, params in groups]

    layers = []
    assigned: set[str] = set()
    for block, prefixes in block_spec(model):
        mods = [(n, m) for n, m in leaves if any(_matches(n, p) for p in prefixes)]
        params = [p for n, m in mods for p in _own_param_names(n, m)]
        assigned.update(params)
        layers.append(Layer(block, tuple(n for n, _ in mods), tuple(params)))
    missing = [n for n, _ in model.named_parameters() if n not in assigned]
    if missing:
        raise ValueError(f"block spec of {type(model).__name__} leaves parameters out: {missing[:5]}")
    return layers


def layer_norms(model: nn.Module, layers: list[Layer]) -> torch.Tensor:
    """‖θ_l‖₂ over each layer's parameters (all of them concatenated)."""
    named = dict(model.named_parameters())
    return torch.stack([torch.linalg.vector_norm(torch.cat([named[p].detach().flatten() for p in layer.param_names]))
                        for layer in layers])
