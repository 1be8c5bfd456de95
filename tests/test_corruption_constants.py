"""ImageNet-C's constants beside CIFAR-10-C's: chosen by image size, stronger where ImageNet-C's are,
and every corruption runs with them at ImageNet-like sizes."""
from __future__ import annotations

import pytest
import torch

from autoft_core.data.corruptions import CIFAR10_C, CORRUPTIONS, IMAGENET_C, constants_for, corrupt
from autoft_core.errors import BadArgumentError


def test_constants_by_size():
    assert [constants_for(s) for s in (16, 32, 63, 64, 224)] == ["cifar10-c"] * 3 + ["imagenet-c"] * 2
    assert set(CIFAR10_C) == set(IMAGENET_C) == set(CORRUPTIONS)


@pytest.mark.parametrize("severity", [1, 3])  # little clipping at 0.5 ± 3 std
def test_gaussian_noise_has_each_recipes_standard_deviation(severity):
    grey = torch.full((4, 3, 64, 64), 0.5)
    for constants, table in (("cifar10-c", CIFAR10_C), ("imagenet-c", IMAGENET_C)):
        noise = corrupt(grey, "gaussian_noise", severity, seed=1, constants=constants) - grey
        assert noise.std().item() == pytest.approx(table["gaussian_noise"][severity - 1], rel=0.05)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_corruption_runs_with_imagenet_constants(name):
    images = torch.rand(2, 3, 64, 64)
    out = corrupt(images, name, 5, seed=0, constants="imagenet-c")
    assert out.shape == images.shape and 0 <= out.min() and out.max() <= 1 and not torch.equal(out, images)


def test_unknown_constants_are_refused():
    with pytest.raises(BadArgumentError, match="cifar10-c, imagenet-c"):
        corrupt(torch.rand(1, 3, 8, 8), "frost", 1, constants="mnist-c")
