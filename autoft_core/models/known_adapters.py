"""Adapters for third-party architectures the engine knows: torchvision's ResNets (and the other
torchvision architectures of `torchvision_archs`) and RobustBench's WideResNet-28-10.
`adapters.adapter_for` registers them on first use (torch is loaded by then)."""
from __future__ import annotations

import sys

import torch
from torch import nn


class _WrnTail(nn.Module):
    """RobustBench WRN-28-10 after block3: relu(bn1), 8x8 average pool, flatten (the head is separate)."""

    def __init__(self, wrn: nn.Module) -> None:
        super().__init__()
        self.bn1, self.relu, self.channels = wrn.bn1, wrn.relu, wrn.nChannels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(self.relu(self.bn1(x)), 8).view(-1, self.channels)


def _wrn_stages(wrn: nn.Module) -> list[nn.Module]:
    """WRN-28-10's forward as a chain, each block's BasicBlocks a stage of their own: a frozen prefix can end
    inside a block (on a lent H100, 9 of 29 layers frozen cached the stem alone while the block was one stage)."""
    return [wrn.conv1, *wrn.block1.layer, *wrn.block2.layer, *wrn.block3.layer, _WrnTail(wrn), wrn.fc]


def _resnet_blocks(model: nn.Module) -> list[tuple[str, tuple[str, ...]]]:
    """Lee et al.'s ResNet-50 blocks: stem with layer1, then each later stage, then the head."""
    return [("conv1+layer1", ("conv1", "bn1", "layer1")), ("layer2", ("layer2",)), ("layer3", ("layer3",)),
            ("layer4", ("layer4",)), ("fc", ("fc",))]


def known() -> list[tuple[type, dict]]:
    """torchvision's ResNet and the other torchvision_archs classes, and RobustBench's WideResNet when
    RobustBench is loaded: (class, `register_adapter` keywords) pairs (this module imports no adapters,
    so there is no import cycle)."""
    from torchvision.models.resnet import ResNet

    from .torchvision_archs import known as torchvision_known

    pairs = [(ResNet, {"blocks": _resnet_blocks}), *torchvision_known()]
    if "robustbench" in sys.modules:
        from robustbench.model_zoo.architectures.wide_resnet import WideResNet

        pairs.append((WideResNet, {
            "blocks": lambda m: [("stem+block1", ("conv1", "block1")), ("block2", ("block2",)),
                                 ("block3", ("block3", "bn1")), ("head", ("fc",))],
            "stages": _wrn_stages}))
    return pairs
