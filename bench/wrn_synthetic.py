"""A CIFAR-10-C-sized task on RobustBench's WRN-28-10 (random weights, random images): what the methods and the
loop cost at the real setup's scale where its checkpoint and data files are absent (a lent GPU machine).

Sizes and recipe are the cifar10 setup's: 1,000 clean source images, 1,000 target training images, 1,000
validation and 10,000 test images, Adam at 1e-4 with batch 64. The numbers it gives are costs, not
accuracies. Use it as `--setup python:bench.wrn_synthetic:setup` from the repository root.
"""
from __future__ import annotations

import torch

from autoft_core import CustomSetup
from autoft_core.compat import import_robustbench
from autoft_core.core.data import Split, TaskData
from autoft_core.setups.cifar10 import Cifar10Setup


def _split(n: int, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    return Split(torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g))


def setup() -> CustomSetup:
    """WRN-28-10 with seeded random weights; one synthetic task for every shift."""
    import_robustbench()
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet

    torch.manual_seed(0)
    model = WideResNet(depth=28, widen_factor=10).eval()
    data = TaskData(source=_split(1_000, 1), train=_split(1_000, 2), val=_split(1_000, 3), test=_split(10_000, 4),
                    num_classes=10)
    return CustomSetup(model=model, tasks={"input": data, "feature": data, "output": data},
                       recipe=Cifar10Setup.recipe, description="WRN-28-10 on random CIFAR-sized images (costs only)")
