"""The embedded default's model: a small ResNet for 32x32x3 inputs (a few tens of thousands of weights).

Stem (stride 2: the digits carry 8x8 pixels of information, so 16x16 feature maps lose nothing),
three stages of one basic block each, and a linear head, mirroring WRN-28-10's stem/blocks/head.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Post-activation residual block (conv-bn-relu-conv-bn + shortcut, relu)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(OrderedDict(
                conv=nn.Conv2d(c_in, c_out, 1, stride, bias=False), bn=nn.BatchNorm2d(c_out)))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class DigitsResNet(nn.Module):
    """stem -> stage1 (width ch) -> stage2 (2 width) -> stage3 (4 width, then 1x1 to `features`) -> pooled linear
    head."""

    autoft_blocks = [("stem+stage1", ("stem", "stage1")), ("stage2", ("stage2",)),
                     ("stage3", ("stage3", "expand")), ("head", ("head",))]

    def __init__(self, num_classes: int = 10, width: int = 16, features: int = 128) -> None:
        super().__init__()
        self.stem = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(3, width, 3, 2, 1, bias=False), bn=nn.BatchNorm2d(width), relu=nn.ReLU()))
        self.stage1 = BasicBlock(width, width)
        self.stage2 = BasicBlock(width, 2 * width, stride=2)
        self.stage3 = BasicBlock(2 * width, 4 * width, stride=2)
        self.expand = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(4 * width, features, 1, bias=False), bn=nn.BatchNorm2d(features), relu=nn.ReLU()))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(features, num_classes)

    def autoft_stages(self) -> list[nn.Module]:
        """The forward pass as a chain (lets fine-tuning run a frozen prefix once)."""
        return [self.stem, self.stage1, self.stage2, self.stage3, self.expand, self.pool, self.head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.autoft_stages():
            x = stage(x)
        return x
