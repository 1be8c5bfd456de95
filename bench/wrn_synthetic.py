"""A CIFAR-10-C-sized task on RobustBench's WRN-28-10 (random weights, random images): what the methods and the
loop cost at the real setup's scale where its checkpoint and data files are absent (a lent GPU machine).

Sizes and recipe are the cifar10 setup's: 1,000 clean source images, 1,000 target training images, 1,000
validation and 10,000 test images, 25 epochs of Adam at 1e-5 with batch 64 (the seed paper's Sec. 5).
The numbers it gives are costs, not accuracies. Use it as `--setup python:bench.wrn_synthetic:setup` from the
repository root.
"""
from __future__ import annotations

import torch

from autoft_core import CustomSetup
from autoft_core.core.data import TaskData
from autoft_core.setups.cifar10 import Cifar10Setup
from bench.throughput import build, synthetic


def setup() -> CustomSetup:
    """WRN-28-10 with seeded random weights (the global RNG left as it was); one synthetic task for every shift."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build("wrn").eval()
    cpu = torch.device("cpu")
    data = TaskData(source=synthetic(1_000, cpu, 1), train=synthetic(1_000, cpu, 2), val=synthetic(1_000, cpu, 3),
                    test=synthetic(10_000, cpu, 4), num_classes=10)
    return CustomSetup(model=model, tasks={"input": data, "feature": data, "output": data},
                       recipe=Cifar10Setup.recipe, description="WRN-28-10 on random CIFAR-sized images (costs only)")
