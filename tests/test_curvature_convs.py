"""The curvature products' own convolution backward (`_curvature.masked_conv_backward`): the same products
as PyTorch's double backward and as central differences of the layer gradient, on layers of several
convolutions (strided, grouped, dilated, with and without bias), and no convolution a product does not
need."""
from __future__ import annotations

import copy
from collections import OrderedDict
from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from torch.utils._python_dispatch import TorchDispatchMode

from autoft_core.core.data import Split
from autoft_core.methods import _curvature
from autoft_core.methods._common import probe_mode
from autoft_core.methods._curvature import BlockCurvature

pytestmark = pytest.mark.usefixtures("one_thread")


def _net() -> nn.Module:
    """Four convolutions of different geometry, BatchNorm, and a head; eval mode."""
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=True), bn1=nn.BatchNorm2d(4), relu1=nn.ReLU(),
        conv2=nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2, bias=False), relu2=nn.ReLU(),
        conv3=nn.Conv2d(4, 6, 3, stride=2), bn3=nn.BatchNorm2d(6), relu3=nn.ReLU(),
        conv4=nn.Conv2d(6, 6, 1, bias=False), relu4=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), head=nn.Linear(6, 3)))
    with torch.no_grad():
        net.bn1.running_mean.uniform_(-0.1, 0.1)
        net.bn3.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _groups(net: nn.Module) -> list[list[nn.Parameter]]:
    """Layers of one, two and three modules: a product's second derivatives cross convolutions within one."""
    return [[net.conv1.weight, net.conv1.bias],
            [net.bn1.weight, net.bn1.bias, net.conv2.weight, net.conv3.weight, net.conv3.bias],
            [net.conv4.weight],
            [net.bn3.weight, net.head.weight, net.head.bias]]


def _sample(dtype: torch.dtype) -> Split:
    g = torch.Generator().manual_seed(1)
    return Split(torch.rand(16, 3, 11, 11, generator=g).to(dtype), torch.randint(0, 3, (16,), generator=g))


def _vectors(groups: list[list[nn.Parameter]], dtype: torch.dtype) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return [torch.randn(sum(p.numel() for p in group), generator=g).to(dtype) for group in groups]


@pytest.mark.parametrize("kind", ["hessian", "gauss-newton"])
def test_products_equal_pytorchs_own_double_backward(monkeypatch, kind):
    net = _net()
    groups, sample = _groups(net), _sample(torch.float32)
    with probe_mode(net):
        masked = BlockCurvature(net, groups, sample, kind)
        with monkeypatch.context() as patch:
            patch.setattr(_curvature, "masked_conv_backward", lambda model, grads, example: nullcontext())
            native = BlockCurvature(net, groups, sample, kind)
        assert not any("forward" in vars(m) for m in net.modules())  # every convolution's own forward is back
        for ours, theirs in zip(masked.grads, native.grads):
            torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
        for l, v in enumerate(_vectors(groups, torch.float32)):
            torch.testing.assert_close(masked.product(l, v), native.product(l, v), rtol=1e-5, atol=1e-6)


def test_products_match_central_differences_of_the_layer_gradient():
    net = _net().double()
    groups, sample = _groups(net), _sample(torch.float64)
    with probe_mode(net):
        curvature = BlockCurvature(net, groups, sample, "hessian")
        for l, v in enumerate(_vectors(groups, torch.float64)):
            v = v / v.norm()
            eps = 1e-6
            differences = (_shifted_gradient(net, l, sample, eps * v)
                           - _shifted_gradient(net, l, sample, -eps * v)) / (2 * eps)
            product = curvature.product(l, v)
            assert float((product - differences).norm() / differences.norm()) < 1e-6, l


def _shifted_gradient(net: nn.Module, layer: int, sample: Split, shift: torch.Tensor) -> torch.Tensor:
    """The flat gradient of the mean loss in layer `layer`, on a copy of `net` with that layer moved by
    `shift` (plain autograd; the original keeps the weights the products' graphs saved)."""
    moved = copy.deepcopy(net)
    group = _groups(moved)[layer]
    with torch.no_grad():
        vector_to_parameters(parameters_to_vector(group) + shift, group)
    loss = F.cross_entropy(moved(sample.x), sample.y)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, group)])


class _CountConvolutions(TorchDispatchMode):
    """Counts the convolutions run (forward ones, each computed output of a backward one, and each matrix
    product by the weight of a 1x1 convolution of `one_by_one`, which runs its input gradients so)."""

    def __init__(self, one_by_one: nn.Conv2d) -> None:
        super().__init__()
        self.count, self.matrix = 0, tuple(one_by_one.weight.shape[:2])

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten.convolution.default:
            self.count += 1
        elif func is torch.ops.aten.convolution_backward.default:
            self.count += sum(args[-1])
        elif func is torch.ops.aten.mm.default and tuple(args[1].shape) in (self.matrix, self.matrix[::-1]):
            self.count += 1
        return func(*args, **kwargs)


def test_a_product_runs_two_convolutions_per_convolution_above_its_layer_and_two_for_its_own():
    net = _net()
    groups, sample = [[p] for p in (net.conv1.weight, net.conv2.weight, net.conv3.weight, net.conv4.weight)], \
        _sample(torch.float32)
    with probe_mode(net):
        curvature = BlockCurvature(net, groups, sample, "hessian")
        for l, v in enumerate(_vectors(groups, torch.float32)):
            with _CountConvolutions(net.conv4) as counted:
                curvature.product(l, v)
            # above: the tangent's way up and back; own: the tangent of its output and the weight gradient
            # that is the product. No weight gradient above, no gradient of the layer's input (nor the image's)
            assert counted.count == 2 * (len(groups) - 1 - l) + 2, l


class _ReadTwice(nn.Module):
    """A convolution whose output a BatchNorm and a residual sum both read, and a BatchNorm reading that sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.after = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), nn.BatchNorm2d(3)
        self.head = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.head(self.after(self.bn(y) + y).mean((2, 3)))


def _plain_convs(net: nn.Module) -> list[nn.Conv2d]:
    return [m for m in net.modules() if type(m) is nn.Conv2d]


def test_each_batchnorm_that_alone_reads_a_convolutions_output_is_folded_into_it():
    net, sample = _net(), _sample(torch.float32)
    with probe_mode(net):
        assert _curvature._conv_batchnorm_pairs(net, _plain_convs(net), sample.x[:1]) == {net.conv1: net.bn1,
                                                                                          net.conv3: net.bn3}
        other = _ReadTwice().eval()
        assert _curvature._conv_batchnorm_pairs(other, _plain_convs(other), sample.x[:1]) == {}


@pytest.mark.parametrize("make", [_net, lambda: _ReadTwice().eval()])
def test_the_folded_network_computes_the_same_function_without_batchnorm_and_puts_every_forward_back(
        monkeypatch, make):
    net, sample = make(), _sample(torch.float32)
    with torch.no_grad():
        for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    expected = net(sample.x)
    calls = []
    native = F.batch_norm
    monkeypatch.setattr(F, "batch_norm", lambda *a, **k: calls.append(1) or native(*a, **k))
    with probe_mode(net), _curvature.masked_conv_backward(net, _curvature._WeightGradients(), sample.x[:1]):
        calls.clear()  # the pass that finds the pairs runs BatchNorm's own forward
        folded = net(sample.x)
    torch.testing.assert_close(folded, expected, rtol=1e-5, atol=1e-6)
    assert len(calls) == (0 if make is _net else 2)  # folded away, or (read twice / a sum) left as they were
    assert not any("forward" in vars(m) for m in net.modules())


def test_products_through_a_batchnorm_left_unfolded_equal_pytorchs_own(monkeypatch):
    net = _ReadTwice().eval()
    groups, sample = [list(net.conv.parameters()) + list(net.bn.parameters()), list(net.head.parameters())], \
        _sample(torch.float32)
    with probe_mode(net):
        masked = BlockCurvature(net, groups, sample, "hessian")
        with monkeypatch.context() as patch:
            patch.setattr(_curvature, "masked_conv_backward", lambda model, grads, example: nullcontext())
            native = BlockCurvature(net, groups, sample, "hessian")
        for l, v in enumerate(_vectors(groups, torch.float32)):
            torch.testing.assert_close(masked.product(l, v), native.product(l, v), rtol=1e-5, atol=1e-6)


class _Calls(nn.Module):
    """A folding pair (conv1 → bn1) and a BatchNorm reading a sum (bn2), called by position or, as a model
    may call them, by torch's keyword `input`."""

    def __init__(self, by_keyword: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.by_keyword = by_keyword
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 3)

    def _call(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return module(input=x) if self.by_keyword else module(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._call(self.bn1, self._call(self.conv1, x)).relu()
        return self.head(self._call(self.bn2, self._call(self.conv2, y) + y).relu().mean((2, 3)))


def test_modules_called_by_keyword_fold_and_give_the_same_products_as_called_by_position():
    sample, products, pairs = _sample(torch.float32), [], []
    for by_keyword in (False, True):
        net = _Calls(by_keyword).eval()
        groups = [list(net.conv1.parameters()) + list(net.bn1.parameters()),
                  list(net.conv2.parameters()) + list(net.bn2.parameters()) + list(net.head.parameters())]
        with probe_mode(net):
            names = {m: name for name, m in net.named_modules()}
            found = _curvature._conv_batchnorm_pairs(net, _plain_convs(net), sample.x[:1])
            pairs.append({names[conv]: names[bn] for conv, bn in found.items()})
            curvature = BlockCurvature(net, groups, sample, "hessian")
            products.append([curvature.product(l, v) for l, v in enumerate(_vectors(groups, torch.float32))])
        assert not any("forward" in vars(m) for m in net.modules())
    assert pairs[0] == pairs[1] == {"conv1": "bn1"}  # bn2 reads a sum: an affine map, unfolded
    for by_position, by_keyword in zip(*products):
        assert torch.equal(by_position, by_keyword)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_a_1x1_convolutions_input_gradient_as_a_matrix_product_equals_torchs(stride, layout):
    g = torch.Generator().manual_seed(3)
    conv = nn.Conv2d(5, 7, 1, stride=stride, bias=False)
    x = torch.randn(4, 5, 11, 10, generator=g).contiguous(memory_format=layout)
    out_grad = torch.randn(conv(x).shape, generator=g).contiguous(memory_format=layout)
    ours = _curvature._input_gradient(out_grad, x, conv.weight.detach(), conv)
    theirs = torch.nn.grad.conv2d_input(x.shape, conv.weight.detach(), out_grad, stride=stride)
    assert ours.shape == x.shape
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


class _CountActivationZeros(TorchDispatchMode):
    """Counts the zero-filled tensors of activation shape (4 dimensions) made."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in (torch.ops.aten.zeros_like.default, torch.ops.aten.zeros.default) and out.dim() == 4:
            self.count += 1
        return out


def test_a_product_through_relus_makes_no_zero_activation_gradient_and_every_relu_is_put_back():
    net = _net()
    groups, sample = _groups(net), _sample(torch.float32)
    with probe_mode(net):
        curvature = BlockCurvature(net, groups, sample, "hessian")
        with _CountActivationZeros() as counted:
            for l, v in enumerate(_vectors(groups, torch.float32)):
                curvature.product(l, v)
    assert counted.count == 0  # PyTorch's relu double backward makes one per relu above the layer
    assert not any("forward" in vars(m) for m in net.modules() if isinstance(m, nn.ReLU))


class _MixedLayouts(TorchDispatchMode):
    """Counts relu backwards (threshold_backward) whose gradient and output are in different memory layouts."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.threshold_backward.default and args[0].dim() == 4:
            last = torch.channels_last
            self.count += args[0].is_contiguous(memory_format=last) != args[1].is_contiguous(memory_format=last)
        return func(*args, **(kwargs or {}))


def test_in_a_channels_last_network_every_relu_backward_runs_on_one_layout():
    net = _net().to(memory_format=torch.channels_last)
    groups, sample = _groups(net), _sample(torch.float32)
    sample = Split(sample.x.contiguous(memory_format=torch.channels_last), sample.y)
    with probe_mode(net):
        curvature = BlockCurvature(net, groups, sample, "hessian")
        with _MixedLayouts() as counted:
            for l, v in enumerate(_vectors(groups, torch.float32)):
                curvature.product(l, v)
    assert counted.count == 0  # the spatial mean's gradient arrives NCHW at relu4 (8x slower on two layouts)
