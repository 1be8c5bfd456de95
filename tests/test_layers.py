"""The layer partition: every parameter in exactly one layer, ordered input -> output, BN with its conv."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from autoft_core.errors import BadArgumentError
from autoft_core.layers import partition
from autoft_core.models.digits_net import DigitsResNet
from forward_calls import norms_after_weighted
from tiny_nets import wide_resnet


MODELS = {"digits": DigitsResNet, "wrn-28-10": wide_resnet, "resnet50": torchvision.models.resnet50}
BLOCKS = {"digits": ["stem+stage1", "stage2", "stage3", "head"],
          "wrn-28-10": ["stem+block1", "block2", "block3", "head"],
          "resnet50": ["conv1+layer1", "layer2", "layer3", "layer4", "fc"]}


@pytest.fixture(scope="module", params=list(MODELS))
def named_model(request) -> tuple[str, nn.Module]:
    return request.param, MODELS[request.param]()


@pytest.mark.parametrize("granularity", ["module", "block"])
def test_every_parameter_in_exactly_one_layer(named_model, granularity):
    _, model = named_model
    layers = partition(model, granularity)
    names = [p for layer in layers for p in layer.param_names]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert len(names) == len(set(names))


def test_module_layers_follow_forward_order_and_group_batchnorm(named_model):
    name, model = named_model
    layers = partition(model, "module")
    owner = {m: layer.name for layer in layers for m in layer.module_names}
    weighted, last_before = norms_after_weighted(model, torch.rand(2, 3, 32, 32), (nn.BatchNorm2d,))
    assert [layer.name for layer in layers] == weighted  # one layer per conv/linear, in the order forward runs them
    assert isinstance(dict(model.named_modules())[layers[-1].name], nn.Linear)
    assert last_before and all(owner[bn] == (conv or weighted[0]) for bn, conv in last_before.items())
    if name == "digits":
        assert layers[1].module_names == ("stage1.conv1", "stage1.bn1")


def test_block_layers_are_lee_et_al_blocks(named_model):
    name, model = named_model
    assert [layer.name for layer in partition(model, "block")] == BLOCKS[name]


def test_digits_net_is_small():
    n = sum(p.numel() for p in DigitsResNet().parameters())
    assert 10_000 < n < 100_000




def test_unknown_granularity_is_a_clear_error():
    with pytest.raises(BadArgumentError, match="module, block"):
        partition(DigitsResNet(), "neuron")
