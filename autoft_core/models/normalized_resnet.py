"""torchvision's ResNet-50 taking [0, 1] images (BREEDS' source model): it normalises with ImageNet's
mean and standard deviation itself, so every setup hands models the same kind of input."""
from __future__ import annotations

import torch
from torchvision.models.resnet import Bottleneck, ResNet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class NormalizedResNet(ResNet):
    """ResNet-50 with ImageNet normalisation inside; Lee et al.'s blocks declared for the engine."""

    autoft_blocks = [("conv1+layer1", ("conv1", "bn1", "layer1")), ("layer2", ("layer2",)),
                     ("layer3", ("layer3",)), ("layer4", ("layer4",)), ("fc", ("fc",))]

    def __init__(self, num_classes: int) -> None:
        super().__init__(Bottleneck, [3, 4, 6, 3], num_classes=num_classes)  # = torchvision resnet50()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward((x - self.mean) / self.std)
