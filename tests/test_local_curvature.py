"""Curvature products local to each layer (`_local_curvature`): the same gradients and products as the double
backward of `_curvature.BlockCurvature` (float64, where the rounding does not hide a missing term), one
convolution and one weight gradient of the layer per product, and the double backward wherever the model
or the layers are not what the local products assume."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from autoft_core.core.data import Split
from autoft_core.layers import layer_parameters, partition
from autoft_core.methods import _curvature, _local_curvature
from autoft_core.methods._common import probe_mode
from autoft_core.methods._curvature import BlockCurvature
from autoft_core.methods._local_curvature import LocalCurvature, curvature
from tiny_nets import tiny_bn_net

pytestmark = pytest.mark.usefixtures("one_thread")


def _net() -> nn.Module:
    """Convolutions with and without bias, strided, grouped, dilated and 1x1, BatchNorms with and without
    affine parameters, one BatchNorm reading a sum (not folded), a residual sum and a head; eval mode."""
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=True), bn1=nn.BatchNorm2d(4), relu1=nn.ReLU(),
        conv2=nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2, bias=False), bn2=nn.BatchNorm2d(4, affine=False),
        relu2=nn.ReLU(), conv3=nn.Conv2d(4, 6, 3, stride=2), bn3=nn.BatchNorm2d(6), relu3=nn.ReLU(),
        conv4=nn.Conv2d(6, 6, 1, bias=False), relu4=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(),
        head=nn.Linear(6, 3)))
    with torch.no_grad():
        for bn in (net.bn1, net.bn2, net.bn3):
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
        for bn in (net.bn1, net.bn3):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return net.eval().double()


def _sample(n: int = 16) -> Split:
    g = torch.Generator().manual_seed(1)
    return Split(torch.rand(n, 3, 11, 11, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g))


def _by_module(net: nn.Module) -> list[list[nn.Parameter]]:
    """One layer per module with parameters (a folded BatchNorm's apart from its convolution)."""
    return [list(m.parameters(recurse=False)) for m in net.modules() if list(m.parameters(recurse=False))]


def _with_batchnorms(net: nn.Module) -> list[list[nn.Parameter]]:
    """Each convolution with the BatchNorm after it in one layer, as the digits setup's layers are."""
    return [[*net.conv1.parameters(), *net.bn1.parameters()], [*net.conv2.parameters()],
            [*net.conv3.parameters(), *net.bn3.parameters()], [*net.conv4.parameters()], [*net.head.parameters()]]


def _solved_apart(net: nn.Module) -> list[list[nn.Parameter]]:
    """A BatchNorm's γ alone and its β with the convolution's bias: any subset of a layer's parameters."""
    return [[net.conv1.weight], [net.bn1.weight], [net.bn1.bias, net.conv1.bias], [net.conv3.weight, net.bn3.bias],
            [net.bn3.weight], [net.head.bias]]


@pytest.mark.parametrize("kind", _curvature.CURVATURES)
@pytest.mark.parametrize("groups", [_by_module, _with_batchnorms, _solved_apart])
def test_local_gradients_and_products_equal_the_double_backwards(kind, groups):
    net, sample = _net(), _sample()
    params = groups(net)
    g = torch.Generator().manual_seed(2)
    with probe_mode(net):
        local, double = LocalCurvature.build(net, params, sample, kind), BlockCurvature(net, params, sample, kind)
        assert local is not None
        for l, group in enumerate(params):
            torch.testing.assert_close(local.grads[l], double.grads[l], rtol=1e-10, atol=1e-12)
            v = torch.randn(sum(p.numel() for p in group), generator=g, dtype=torch.float64)
            torch.testing.assert_close(local.product(l, v), double.product(l, v), rtol=1e-9, atol=1e-12)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())


def test_the_exact_products_differ_from_gauss_newton_where_a_layers_parameters_multiply():
    """The second term (γ times the weights it scales) is there: without it the local products would be
    Gauss-Newton's, which the double backward's exact products are not."""
    net, sample = _net(), _sample()
    params = _with_batchnorms(net)
    v = torch.randn(sum(p.numel() for p in params[0]), generator=torch.Generator().manual_seed(3),
                    dtype=torch.float64)
    with probe_mode(net):
        exact = LocalCurvature.build(net, params, sample, "hessian").product(0, v)
        gauss_newton = LocalCurvature.build(net, params, sample, "gauss-newton").product(0, v)
    assert float((exact - gauss_newton).norm() / exact.norm()) > 1e-3


class _Convolutions(TorchDispatchMode):
    """Counts the convolution ops run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += "convolution" in str(func)
        return func(*args, **(kwargs or {}))


def test_a_local_product_runs_one_convolution_and_one_weight_gradient_of_its_own_layer():
    net, sample = _net(), _sample()
    params = _with_batchnorms(net)
    with probe_mode(net):
        local = LocalCurvature.build(net, params, sample, "hessian")
        for l in range(4):  # the convolution layers; the stem's product crosses no layer above it
            with _Convolutions() as convolutions:
                local.product(l, local.grads[l])
            assert convolutions.count == 2


class _Sigmoid(nn.Module):
    """A head after a sigmoid: not piecewise linear above the convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 3, 3), nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.sigmoid(self.conv(x)).mean((2, 3)))


class _ReadsAWeightTwice(nn.Module):
    """A head whose weight the forward also reads itself."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 3, 3), nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.conv(x).relu().mean((2, 3))
        return self.head(pooled) + pooled @ self.head.weight.T


class _NormOfASum(nn.Module):
    """A BatchNorm reading a residual sum: not folded into a convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.head = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(self.conv(x) + x).relu().mean((2, 3)))


MODELS = {"a sigmoid above": _Sigmoid, "a weight read twice": _ReadsAWeightTwice,
          "a BatchNorm of a sum": _NormOfASum}


@pytest.mark.parametrize("case", ["two convolutions in a layer", *MODELS, "too many examples", "too many numbers"])
def test_where_the_local_products_do_not_apply_the_double_backward_computes_them(case, monkeypatch):
    net, sample, params = _net(), _sample(), None
    if case == "two convolutions in a layer":
        params = [[net.conv2.weight, net.conv3.weight]]
    elif case in MODELS:
        torch.manual_seed(0)
        net = MODELS[case]().double().eval()
    elif case == "too many examples":
        monkeypatch.setattr(_local_curvature, "GRAD_CHUNK", len(sample) - 1)
    else:
        monkeypatch.setattr(_local_curvature, "LOCAL_BYTES", 1000)
    params = params or _by_module(net)
    with probe_mode(net):
        assert LocalCurvature.build(net, params, sample, "hessian") is None
        chosen = curvature(net, params, sample, "hessian")
    assert isinstance(chosen, BlockCurvature)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())


def test_the_tiny_nets_layers_take_the_local_products():
    """What the Newton-step methods' tests solve (`test_methods_hessian`) goes through the local products."""
    net = tiny_bn_net()
    g = torch.Generator().manual_seed(0)
    sample = Split(torch.rand(8, 3, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g))
    with probe_mode(net):
        assert isinstance(curvature(net, layer_parameters(net, partition(net)), sample, "hessian"), LocalCurvature)
