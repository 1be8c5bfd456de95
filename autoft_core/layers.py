"""Model-agnostic layer partition: the units that each get one learning-rate multiplier alpha_l.

`module` granularity: every Conv2d / Linear is a layer, and the parameterised modules that follow it
(its BatchNorm) share its multiplier, unless the model's adapter declares its module layers (a
Transformer: patch embedding, each block's attention and MLP, final norm + head). `block`
granularity: Lee et al.'s (2023) blocks, e.g. WRN stem+block1, block2, block3, head. Layers are
ordered input -> output (module registration order, which is the forward order for the supported
architectures); in a declared partition each parameter goes to the first layer whose prefixes match it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from .core.recipe import GRANULARITIES
from .errors import BadArgumentError
from .models.adapters import Blocks, LayerSpec, adapter_for

_STARTS_LAYER = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class Layer:
    """A named group of modules sharing a multiplier; `param_names` index `model.named_parameters()`."""

    name: str
    module_names: tuple[str, ...]
    param_names: tuple[str, ...]
    residual: bool = False  # a residual branch (x + f(x)): taking the layer out skips the branch

    def parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """This layer's parameters in `model`, in the order of `param_names`."""
        return layer_parameters(model, [self])[0]


def layer_parameters(model: nn.Module, layers: Sequence[Layer]) -> list[list[nn.Parameter]]:
    """Each layer's parameters, from one walk over the model's named parameters (not one per layer)."""
    named = dict(model.named_parameters())
    return [[named[n] for n in layer.param_names] for layer in layers]


def _parameterised_leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that own parameters directly, in registration order."""
    return [(name, m) for name, m in model.named_modules()
            if any(True for _ in m.parameters(recurse=False))]


def _own_param_names(name: str, module: nn.Module) -> list[str]:
    prefix = f"{name}." if name else ""
    return [prefix + p for p, _ in module.named_parameters(recurse=False)]


def block_spec(model: nn.Module) -> Blocks:
    """Lee et al.'s blocks as (block name, name prefixes[, residual]), from the model's adapter."""
    return adapter_for(model).blocks(model)


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def partition(model: nn.Module, granularity: str = "module") -> list[Layer]:
    """Split the model's parameters into ordered layers; every parameter lands in exactly one."""
    if granularity not in GRANULARITIES:
        raise BadArgumentError("granularity", granularity, GRANULARITIES)
    spec = block_spec(model) if granularity == "block" else adapter_for(model).modules(model)
    if spec is None:
        return _conv_linear_layers(model)
    return _declared_layers(model, spec)


def _conv_linear_layers(model: nn.Module) -> list[Layer]:
    """Each Conv2d / Linear starts a layer; the parameterised modules after it join it."""
    leaves = _parameterised_leaves(model)
    groups: list[tuple[str, list[str]]] = []
    pending: list[str] = []  # parameterised modules before the first conv join the first layer
    for name, module in leaves:
        if isinstance(module, _STARTS_LAYER):
            groups.append((name, [*pending, name]))
            pending = []
        elif groups:
            groups[-1][1].append(name)
        else:
            pending.append(name)
    modules = dict(leaves)
    return [Layer(n, tuple(mods), tuple(p for m in mods for p in _own_param_names(m, modules[m])))
            for n, mods in groups]


def _declared_layers(model: nn.Module, spec: Blocks) -> list[Layer]:
    """Layers from (name, prefixes[, residual]) entries; a prefix names modules or parameters."""
    owner = {p: name for name, module in _parameterised_leaves(model) for p in _own_param_names(name, module)}
    claimed: dict[str, str] = {}  # parameter name -> the layer that took it (the first whose prefixes match)
    layers = []
    for entry in spec:
        item = LayerSpec(*entry)
        params = [p for p in owner if p not in claimed and any(_matches(p, prefix) for prefix in item.prefixes)]
        if not params:
            raise ValueError(_claims_nothing(model, item, claimed))
        claimed.update(dict.fromkeys(params, item.name))
        modules = tuple(dict.fromkeys(owner[p] for p in params))
        layers.append(Layer(item.name, modules, tuple(params), item.residual))
    free = [p for p in owner if p not in claimed]
    if free:
        raise ValueError(f"layer spec of {type(model).__name__} leaves parameters out: {free[:5]}")
    return layers


def _claims_nothing(model: nn.Module, item: LayerSpec, claimed: dict[str, str]) -> str:
    """Why layer `item` gets no parameters: its prefixes match none, or only ones earlier layers took (an overlap)."""
    shared = [p for p in claimed if any(_matches(p, prefix) for prefix in item.prefixes)]
    if not shared:
        return f"layer {item.name} of {type(model).__name__} matches no parameters: {item.prefixes}"
    others = ", ".join(dict.fromkeys(claimed[p] for p in shared))
    return (f"layers {others} and {item.name} of {type(model).__name__} claim the same parameters {shared[:5]}"
            f"{' and more' if len(shared) > 5 else ''}: put each parameter in one layer only (the first layer to "
            f"claim a parameter takes it, leaving {item.name} none)")
