"""Adapters for third-party architectures the engine knows: torchvision's ResNets and RobustBench's
WideResNet-28-10. `adapters.adapter_for` registers them on first use (torch is loaded by then)."""
from __future__ import annotations

import sys

import torch
from torch import nn

from .adapters import register_adapter


class _WrnTail(nn.Module):
    """RobustBench WRN-28-10 after block3: relu(bn1), 8x8 average pool, flatten (the head is separate)."""

    def __init__(self, wrn: nn.Module) -> None:
        super().__init__()
        self.bn1, self.relu, self.channels = wrn.bn1, wrn.relu, wrn.nChannels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(self.relu(self.bn1(x)), 8).view(-1, self.channels)


def _resnet_blocks(model: nn.Module) -> list[tuple[str, tuple[str, ...]]]:
    """Lee et al.'s ResNet-50 blocks: stem with layer1, then each later stage, then the head."""
    return [("conv1+layer1", ("conv1", "bn1", "layer1")), ("layer2", ("layer2",)), ("layer3", ("layer3",)),
            ("layer4", ("layer4",)), ("fc", ("fc",))]


def register_known() -> None:
    """Register torchvision's ResNet, and RobustBench's WideResNet when RobustBench is loaded."""
    from torchvision.models.resnet import ResNet

    register_adapter(ResNet, _resnet_blocks)
    if "robustbench" in sys.modules:
        from robustbench.model_zoo.architectures.wide_resnet import WideResNet

        register_adapter(WideResNet,
                         blocks=lambda m: [("stem+block1", ("conv1", "block1")), ("block2", ("block2",)),
                                           ("block3", ("block3", "bn1")), ("head", ("fc",))],
                         stages=lambda m: [m.conv1, m.block1, m.block2, m.block3, _WrnTail(m), m.fc])
