"""The model-adapter registry: how the engine sees an architecture's blocks and forward stages.

A model declares them itself (`autoft_blocks`, a list of (block name, name prefixes), and
`autoft_stages()`, its forward as a chain of modules), or an adapter is registered for its class
(`register_adapter`; torchvision's and RobustBench's architectures in `known_adapters`); the engine never
matches class names. Unknown models get
their top-level children as blocks and no stages (fine-tuned whole).

A model may also declare its `module`-granularity layers (`autoft_modules`, same shape as the blocks;
default: each Conv2d / Linear with the modules after it), e.g. a Transformer's attention and MLP
branches. A prefix names modules or parameters (`blocks.0.attn`, `features.1.0.layer_scale`); an
entry may carry a third item, True when the layer is a residual branch (its output is added to its
input: taking the layer out means skipping the branch).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from torch import nn


class LayerSpec(NamedTuple):
    """One layer of a declared partition: its name, the module / parameter name prefixes it owns, and
    whether it is a residual branch."""

    name: str
    prefixes: tuple[str, ...]
    residual: bool = False


Blocks = list[tuple]  # (name, prefixes) or (name, prefixes, residual) entries: LayerSpec's fields


@dataclass(frozen=True)
class Adapter:
    """Lee et al.'s blocks of a model and, when its forward is a chain, the chain's stages."""

    blocks: Callable[[nn.Module], Blocks]
    stages: Callable[[nn.Module], list[nn.Module] | None]
    modules: Callable[[nn.Module], Blocks | None] = lambda model: None  # None: each conv / linear


_REGISTRY: dict[type, Adapter] = {}


def register_adapter(cls: type[nn.Module], blocks: Callable[[nn.Module], Blocks],
                     stages: Callable[[nn.Module], list[nn.Module] | None] = lambda model: None,
                     modules: Callable[[nn.Module], Blocks | None] = lambda model: None) -> None:
    """Teach the engine an architecture it cannot declare itself (a third-party class)."""
    _REGISTRY[cls] = Adapter(blocks, stages, modules)


def _child_blocks(model: nn.Module) -> Blocks:
    return [(name, (name,)) for name, child in model.named_children() if any(True for _ in child.parameters())]


def _declared(model: nn.Module) -> Adapter:
    blocks = getattr(model, "autoft_blocks", None)
    stages = getattr(model, "autoft_stages", None)
    modules = getattr(model, "autoft_modules", None)
    return Adapter(lambda m: list(blocks) if blocks is not None else _child_blocks(m),
                   lambda m: list(stages()) if stages is not None else None,
                   lambda m: modules)


def adapter_for(model: nn.Module) -> Adapter:
    """The model's own declaration, else the adapter registered for its class (or a base class), else
    the default (top-level children as blocks, no stages)."""
    if any(hasattr(model, f"autoft_{what}") for what in ("blocks", "stages", "modules")):
        return _declared(model)
    from .known_adapters import known

    for cls, hooks in known():
        if cls not in _REGISTRY:
            register_adapter(cls, **hooks)
    for cls in type(model).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    return _declared(model)
