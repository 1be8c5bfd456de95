"""The folder setup's architectures: each builds, and both layer partitions cover every parameter once
in the blocks and layers declared for it."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from autoft_core.layers import partition
from autoft_core.models.torchvision_archs import ARCH_NAMES, ARCHS, build
from forward_calls import norms_after_weighted

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
    owner = {p: layer.name for layer in layers for p in layer.param_names}
    family = ARCHS[arch].family
    if family == "vit":  # declared: the patch embedding, each block's attention and MLP (each with its norm), the head
        parts = [f"block{i}.{part}" for i in range(len(model.blocks)) for part in ("attn", "mlp")]
        assert [layer.name for layer in layers] == ["embed", *parts, "head"]
        assert all(owner[p] == f"block{p.split('.')[1]}.{p.split('.')[2]}" for p in owner if p.startswith("blocks."))
    elif family == "convnext":  # the layer scale with the block's last linear, a norm with its conv
        assert owner["features.1.0.layer_scale"] == "features.1.0.block.5"
        assert owner["features.2.0.weight"] == owner["features.2.1.weight"] == "features.2"
    else:  # one layer per conv/linear in the order forward runs them, each BatchNorm with the conv it follows
        weighted, last_before = norms_after_weighted(model, torch.rand(2, 3, 32, 32), (nn.BatchNorm2d,))
        assert [layer.name for layer in layers] == weighted
        assert last_before and all(owner[f"{bn}.weight"] == conv for bn, conv in last_before.items())
