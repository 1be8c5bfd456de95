"""The model-adapter registry: how the engine sees an architecture's blocks and forward stages.

A model declares them itself (`autoft_blocks`, a list of (block name, module-name prefixes), and
`autoft_stages()`, its forward as a chain of modules), or an adapter is registered for its class
(`register_adapter`; torchvision's ResNet and RobustBench's WRN in `known_adapters`); the engine never
matches class names. Unknown models get
their top-level children as blocks and no stages (fine-tuned whole).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

Blocks = list[tuple[str, tuple[str, ...]]]


@dataclass(frozen=True)
class Adapter:
    """Lee et al.'s blocks of a model and, when its forward is a chain, the chain's stages."""

    blocks: Callable[[nn.Module], Blocks]
    stages: Callable[[nn.Module], list[nn.Module] | None]


_REGISTRY: dict[type, Adapter] = {}


def register_adapter(cls: type[nn.Module], blocks: Callable[[nn.Module], Blocks],
                     stages: Callable[[nn.Module], list[nn.Module] | None] = lambda model: None) -> None:
    """Teach the engine an architecture it cannot declare itself (a third-party class)."""
    _REGISTRY[cls] = Adapter(blocks, stages)


def _child_blocks(model: nn.Module) -> Blocks:
    return [(name, (name,)) for name, child in model.named_children() if any(True for _ in child.parameters())]


def _declared(model: nn.Module) -> Adapter:
    blocks = getattr(model, "autoft_blocks", None)
    stages = getattr(model, "autoft_stages", None)
    return Adapter(lambda m: [(n, tuple(p)) for n, p in blocks] if blocks is not None else _child_blocks(m),
                   lambda m: list(stages()) if stages is not None else None)


def adapter_for(model: nn.Module) -> Adapter:
    """The model's own declaration, else the adapter registered for its class (or a base class), else
    the default (top-level children as blocks, no stages)."""
    if hasattr(model, "autoft_blocks") or hasattr(model, "autoft_stages"):
        return _declared(model)
    from .known_adapters import known

    for cls, (blocks, stages) in known().items():
        _REGISTRY.setdefault(cls, Adapter(blocks, stages))
    for cls in type(model).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    return _declared(model)
