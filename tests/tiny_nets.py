"""Networks the tests share: the tiny conv net with BatchNorm (small enough for dense per-layer Hessians) and
RobustBench's WideResNet."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


def tiny_bn_net(mean_spread: float = 0.1) -> nn.Module:
    """conv+bn (120 weights), conv+bn (234), head (21), in eval mode, with non-trivial running statistics
    (means uniform in ±mean_spread, variances in 0.5–2) so that eval mode differs from train mode."""
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 4, 3, padding=1), bn1=nn.BatchNorm2d(4), relu1=nn.ReLU(),
        conv2=nn.Conv2d(4, 6, 3, stride=2), bn2=nn.BatchNorm2d(6), relu2=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), head=nn.Linear(6, 3)))
    with torch.no_grad():
        net.bn1.running_mean.uniform_(-mean_spread, mean_spread)
        net.bn2.running_var.uniform_(0.5, 2.0)
    return net.eval()


def wide_resnet(depth: int = 28, widen_factor: int = 10, drop_rate: float = 0.0) -> nn.Module:
    """RobustBench's WideResNet (WRN-28-10 by default), randomly initialised."""
    from autoft_core.compat import import_robustbench

    import_robustbench()
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet

    return WideResNet(depth=depth, widen_factor=widen_factor, dropRate=drop_rate)
