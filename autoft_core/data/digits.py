"""The embedded data set: scikit-learn's bundled 8x8 handwritten digits as coloured 32x32x3 images.

Each digit is upsampled bilinearly to CIFAR's 32x32 and drawn in a random saturated colour (fixed by
DATASET_SEED) on black, so that colour corruptions such as `saturate` have something to act on.
The images are split once, by DATASET_SEED, into a source part (to pretrain) and a target part.
"""
from __future__ import annotations

import colorsys
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

DATASET_SEED = 0
SOURCE_FRACTION = 0.4
IMAGE_SIZE = 32


@lru_cache(maxsize=1)
def coloured_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as (N, 3, 32, 32) float32 in [0, 1] and their labels (N,) int64."""
    bunch = load_digits()
    gray = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    gray = F.interpolate(gray, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False).clamp(0, 1)
    rng = np.random.default_rng(DATASET_SEED)
    hues = rng.uniform(0.0, 1.0, size=len(gray))
    colours = torch.tensor([colorsys.hsv_to_rgb(h, 0.85, 1.0) for h in hues], dtype=torch.float32)
    images = gray * colours[:, :, None, None]
    return images.contiguous(), torch.tensor(bunch.target, dtype=torch.long)


@lru_cache(maxsize=1)
def source_target_split() -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the source part (for pretraining) and the target part, stratified by digit."""
    _, labels = coloured_digits()
    generator = torch.Generator().manual_seed(DATASET_SEED)
    source, target = [], []
    for digit in range(10):
        idx = torch.nonzero(labels == digit).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        cut = round(SOURCE_FRACTION * len(idx))
        source.append(idx[:cut])
        target.append(idx[cut:])
    return torch.cat(source).sort().values, torch.cat(target).sort().values
