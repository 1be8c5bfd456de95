"""The folder setup's architectures: each builds, and both layer partitions cover every parameter once
in the blocks and layers declared for it."""
from __future__ import annotations

import pytest
from torch import nn

from autoft_core.layers import partition
from autoft_core.models.torchvision_archs import ARCH_NAMES, ARCHS, build

pytestmark = pytest.mark.usefixtures("one_thread")
BLOCKS = {"resnet": ["conv1+layer1", "layer2", "layer3", "layer4", "fc"],
          "convnext": ["stem+stage1", "stage2", "stage3", "stage4", "head"],
          "efficientnet": ["stem+stage1", *(f"stage{i}" for i in range(2, 8)), "top", "head"]}


@pytest.fixture(scope="module", params=ARCH_NAMES)
def arch_model(request) -> tuple[str, nn.Module]:
    return request.param, build(request.param, 7, 32)


@pytest.mark.parametrize("granularity", ["module", "block"])
def test_every_parameter_in_exactly_one_layer(arch_model, granularity):
    _, model = arch_model
    names = [p for layer in partition(model, granularity) for p in layer.param_names]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters()) and len(names) == len(set(names))


def test_the_head_is_the_last_layer_and_has_the_class_count(arch_model):
    arch, model = arch_model
    head = model.get_submodule(ARCHS[arch].head)
    assert isinstance(head, nn.Linear) and head.out_features == 7
    for granularity in ("module", "block"):
        assert set(partition(model, granularity)[-1].param_names) >= {f"{ARCHS[arch].head}.weight"}


def test_blocks_follow_lee_et_al(arch_model):
    arch, model = arch_model
    family = ARCHS[arch].family
    expected = BLOCKS.get(family) or ["embed", *(f"block{i}" for i in range(len(model.blocks))), "head"]
    assert [layer.name for layer in partition(model, "block")] == expected


def test_module_layers_are_each_conv_or_linear_with_its_norm(arch_model):
    arch, model = arch_model
    layers = partition(model, "module")
    convs = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if ARCHS[arch].family in ("resnet", "efficientnet"):
        assert [layer.name for layer in layers] == convs
    if ARCHS[arch].family == "convnext":  # the layer scale with the block's last linear, a norm with its conv
        owners = {p: layer.name for layer in layers for p in layer.param_names}
        assert owners["features.1.0.layer_scale"] == "features.1.0.block.5"
        assert owners["features.2.0.weight"] == owners["features.2.1.weight"] == "features.2"
        assert sum(isinstance(m, (nn.Conv2d, nn.Linear)) for n, m in model.named_modules()) == len(convs)
