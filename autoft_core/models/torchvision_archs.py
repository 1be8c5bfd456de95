"""The architectures the `folder` setup builds by name (`--arch`), with their heads and adapters.

torchvision's ResNets, Wide ResNet-50-2, ConvNeXt-Tiny and EfficientNet-B0 as torchvision builds them
(weights=None: the checkpoint brings the weights), and the Vision Transformers of `models.vit`
(vit_b_16 loads torchvision checkpoints; vit_tiny is ViT-Ti/16, vit_mini the embedded ViT's size, for
small images). Blocks (`block` granularity), after Lee et al.'s ResNet
blocks: stem + first stage, each later stage, the head (EfficientNet: its 1x1 top conv apart).
Module granularity: each conv / linear with its norm (the engine's default rule), except ConvNeXt,
declared here: the rule would give a block's layer scale and a downsampling LayerNorm to the layer
before them. Torch is imported only when a model is built.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Arch:
    """How to build one architecture and where its classifier is."""

    family: str  # resnet, convnext, efficientnet or vit
    head: str  # module name of the final linear classifier


ARCHS = {
    "resnet18": Arch("resnet", "fc"), "resnet34": Arch("resnet", "fc"), "resnet50": Arch("resnet", "fc"),
    "wide_resnet50_2": Arch("resnet", "fc"), "convnext_tiny": Arch("convnext", "classifier.2"),
    "efficientnet_b0": Arch("efficientnet", "classifier.1"), "vit_b_16": Arch("vit", "head.fc"),
    "vit_tiny": Arch("vit", "head.fc"), "vit_mini": Arch("vit", "head.fc"),
}
ARCH_NAMES = tuple(ARCHS)


def build(arch: str, num_classes: int, image_size: int) -> "nn.Module":
    """A randomly initialised `arch` with a `num_classes` head, for `image_size` images (ViTs need it)."""
    if ARCHS[arch].family == "vit":
        from .vit import vit

        return vit(arch, num_classes, image_size)
    import torchvision

    return getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)


def _convnext_blocks(model: "nn.Module") -> list[tuple[str, tuple[str, ...]]]:
    """Stem + stage 1, then each downsampling with its stage, then the head."""
    return [("stem+stage1", ("features.0", "features.1")), ("stage2", ("features.2", "features.3")),
            ("stage3", ("features.4", "features.5")), ("stage4", ("features.6", "features.7")),
            ("head", ("classifier",))]


def _convnext_modules(model: "nn.Module") -> list[tuple[str, tuple[str, ...]]]:
    """Stem conv + norm; per block the depthwise conv + norm, the first pointwise linear, the second
    with the block's layer scale; per downsampling its norm + conv; the head's norm + linear."""
    from torchvision.models.convnext import CNBlock

    layers = [("features.0", ("features.0",))]
    for index, stage in list(model.features.named_children())[1:]:
        if not isinstance(stage[0], CNBlock):
            layers.append((f"features.{index}", (f"features.{index}",)))
            continue
        for j in range(len(stage)):
            block = f"features.{index}.{j}"
            layers += [(f"{block}.block.0", (f"{block}.block.0", f"{block}.block.2")),
                       (f"{block}.block.3", (f"{block}.block.3",)),
                       (f"{block}.block.5", (f"{block}.block.5", f"{block}.layer_scale"))]
    return [*layers, ("classifier", ("classifier",))]


def _efficientnet_blocks(model: "nn.Module") -> list[tuple[str, tuple[str, ...]]]:
    """Stem + stage 1, stages 2-7, the 1x1 top conv, the head."""
    stages = [(f"stage{i}", (f"features.{i}",)) for i in range(2, len(model.features) - 1)]
    return [("stem+stage1", ("features.0", "features.1")), *stages,
            ("top", (f"features.{len(model.features) - 1}",)), ("head", ("classifier",))]


def known() -> list[tuple[type, dict]]:
    """(class, `register_adapter` keywords) for ConvNeXt and EfficientNet (ResNet: `known_adapters`;
    the ViTs declare their own)."""
    from torchvision.models.convnext import ConvNeXt
    from torchvision.models.efficientnet import EfficientNet

    return [(ConvNeXt, {"blocks": _convnext_blocks, "modules": _convnext_modules}),
            (EfficientNet, {"blocks": _efficientnet_blocks})]
