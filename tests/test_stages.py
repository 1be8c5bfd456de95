"""Stage chains (stages.py, the adapters' `stages`): run one after another they are the model's forward, and a
frozen prefix is the longest run of wholly frozen stages."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from autoft_core.layers import partition
from autoft_core.models.digits_net import DigitsResNet
from autoft_core.stages import frozen_prefix, model_stages
from tiny_nets import wide_resnet


def _seeded(build) -> nn.Module:
    torch.manual_seed(0)
    return build().eval()


@pytest.fixture(scope="module")
def wrn() -> nn.Module:
    return _seeded(wide_resnet)


def _images(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _chained(stages: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for stage in stages:
        x = stage(x)
    return x


@torch.no_grad()
@pytest.mark.parametrize("name", ["digits", "wrn-28-10"])
def test_a_stage_chain_is_the_forward(name, wrn):
    model = _seeded(DigitsResNet) if name == "digits" else wrn
    x = _images()
    assert torch.equal(_chained(model_stages(model), x), model(x))


@torch.no_grad()
def test_a_wrn_frozen_prefix_can_end_inside_a_block(wrn):
    """9 of 29 layers frozen (the stem and block1 up to its last BasicBlock's first convolution): the prefix is the
    stem and block1's first three BasicBlocks, the rest starts at the fourth, and prefix then rest is the forward."""
    layers = partition(wrn, "module")
    frozen = {name for layer in layers[:9] for name in layer.param_names}
    prefix, rest = frozen_prefix(wrn, frozen)
    assert list(prefix) == [wrn.conv1, *wrn.block1.layer[:3]]
    assert rest[0] is wrn.block1.layer[3]
    x = _images()
    assert torch.equal(rest(prefix(x)), wrn(x))
    trains_in_the_first_block = frozen - set(layers[2].param_names)
    assert list(frozen_prefix(wrn, trains_in_the_first_block)[0]) == [wrn.conv1]


def test_a_stage_with_functional_dropout_is_never_a_cached_prefix():
    """RobustBench's BasicBlock drops out with F.dropout when its droprate is positive: no nn.Dropout module to see,
    so the prefix stops before the first such block (the same frozen layers give a longer prefix without it)."""
    for rate, expected in ((0.0, 5), (0.3, 1)):
        model = wide_resnet(depth=10, widen_factor=1, drop_rate=rate)
        layers = partition(model, "module")
        frozen = {name for layer in layers[:-1] for name in layer.param_names}
        assert len(frozen_prefix(model, frozen)[0]) == expected  # all but the head; conv1 alone
