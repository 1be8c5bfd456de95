"""CIFAR-10-C corruptions: the API contract, determinism, faithfulness of the helpers, strength vs severity."""
from __future__ import annotations

import colorsys
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import zoom as scipy_zoom
from skimage.filters import gaussian as skimage_gaussian
from sklearn.datasets import load_digits

from autoft_core.cpu_isa import is_x86_64
from autoft_core.data.corruptions import (CORRUPTIONS, SEVERITIES, _clipped_zoom, _gaussian, _motion_kernel,
                                          corrupt)
from autoft_core.errors import BadArgumentError

SEEDLESS = ("gaussian_blur", "jpeg_compression", "pixelate", "saturate", "zoom_blur")
# Corruptions whose published constants are not monotone in strength; each has its own test below.
NOT_MONOTONE = ("frost", "glass_blur", "motion_blur", "saturate", "spatter")


def _digits(count: int, colours: np.ndarray) -> torch.Tensor:
    """sklearn digits upsampled to 32x32 and drawn in the given RGB colours on black."""
    gray = torch.tensor(load_digits().images[:count], dtype=torch.float32).unsqueeze(1) / 16
    gray = F.interpolate(gray, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1)
    return gray * torch.tensor(colours, dtype=torch.float32)[:, :, None, None]


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """24 coloured digits; random RGB colours, so their saturations vary (as saturate's test needs)."""
    return _digits(24, np.random.default_rng(0).uniform(0.1, 1.0, size=(24, 3)))


@pytest.fixture(scope="module")
def corrupted(images: torch.Tensor) -> dict[tuple[str, int], torch.Tensor]:
    """Every corruption at every severity of the test images, seed 0."""
    return {(name, s): corrupt(images, name, s, seed=0) for name in CORRUPTIONS for s in SEVERITIES}


def _distances(images: torch.Tensor, corrupted: dict, name: str) -> list[float]:
    """Mean absolute distance from the clean images at severities 1-5."""
    return [(corrupted[name, s] - images).abs().mean().item() for s in SEVERITIES]


def _increasing(values: list[float]) -> bool:
    return all(a < b for a, b in zip(values, values[1:]))


def test_names_are_the_fourteen_in_alphabetical_order() -> None:
    assert len(CORRUPTIONS) == 14 and CORRUPTIONS == tuple(sorted(CORRUPTIONS))
    assert {"frost", "saturate", "spatter", "zoom_blur"} <= set(CORRUPTIONS)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_shape_dtype_range_and_uint8_levels(images: torch.Tensor, corrupted: dict, name: str) -> None:
    for s in SEVERITIES:
        out = corrupted[name, s]
        assert out.shape == images.shape and out.dtype == torch.float32
        assert out.min() >= 0 and out.max() <= 1
        assert torch.equal(out * 255, (out * 255).round())  # quantised like the recipe's uint8 output
        assert not torch.equal(out, images)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_deterministic_for_a_seed(images: torch.Tensor, name: str) -> None:
    first = corrupt(images, name, 3, seed=7)
    assert torch.equal(first, corrupt(images, name, 3, seed=7))
    other_seed = corrupt(images, name, 3, seed=8)
    assert torch.equal(first, other_seed) == (name in SEEDLESS)


@pytest.mark.parametrize("name", [n for n in CORRUPTIONS if n not in NOT_MONOTONE])
def test_distance_grows_strictly_with_severity(images: torch.Tensor, corrupted: dict, name: str) -> None:
    assert _increasing(_distances(images, corrupted, name))


def test_saturate_grows_within_its_desaturate_and_oversaturate_regimes(images: torch.Tensor,
                                                                       corrupted: dict) -> None:
    # CIFAR constants: S x 0.3, x 0.1 (washed out), then x 1.5, x 2 + 0.1, x 2.5 + 0.2 (oversaturated)
    d = _distances(images, corrupted, "saturate")
    assert d[0] < d[1] and d[2] < d[3] < d[4]


def test_saturate_3_to_5_coincide_on_strongly_saturated_digits() -> None:
    # the embedded digits' colours have S = 0.85: already x 1.5 clips it to 1, so 3-5 are the same image
    colours = np.array([colorsys.hsv_to_rgb(h, 0.85, 1.0) for h in np.linspace(0, 1, 6, endpoint=False)])
    digits = _digits(6, colours)
    assert torch.equal(corrupt(digits, "saturate", 3), corrupt(digits, "saturate", 5))


def test_motion_blur_severities_3_and_4_coincide(images: torch.Tensor, corrupted: dict) -> None:
    # radius 6 vs 8 at sigma 2: ImageMagick's extra taps 13-16 weigh < 1e-9, so the blur is the same
    d = _distances(images, corrupted, "motion_blur")
    assert d[0] < d[1] < d[2] and d[3] < d[4]
    assert (corrupted["motion_blur", 3] - corrupted["motion_blur", 4]).abs().max() <= 1 / 255 + 1e-6
    assert d[2] == pytest.approx(d[3], abs=1e-4)


def test_glass_blur_two_passes_move_further_than_one(images: torch.Tensor, corrupted: dict) -> None:
    # severities 1-3: one neighbour pass, blur sigma 0.05 / 0.25 / 0.4; 4-5: two passes, 0.25 / 0.4.
    # The larger sigma barely changes (here: shrinks) the distance from smooth images; the pass count rules.
    d = _distances(images, corrupted, "glass_blur")
    assert min(d[3], d[4]) > max(d[0], d[1], d[2])


def test_frost_grows_except_3_to_4_where_only_the_image_dims(images: torch.Tensor, corrupted: dict) -> None:
    # (image, frost) weights (1, .2), (1, .3), (.9, .4), (.85, .4), (.75, .45): 3 -> 4 only dims the image,
    # which moves the output towards it; the frost-to-image ratio, hence decorrelation, grows at every step.
    d = _distances(images, corrupted, "frost")
    assert d[0] < d[1] < d[2] and d[3] < d[4]
    clean = images.flatten(1) - images.flatten(1).mean(1, keepdim=True)

    def decorrelation(s: int) -> float:
        out = corrupted["frost", s].flatten(1)
        out = out - out.mean(1, keepdim=True)
        return (1 - (clean * out).sum(1) / (clean.norm(dim=1) * out.norm(dim=1))).mean().item()

    assert _increasing([decorrelation(s) for s in SEVERITIES])


def test_spatter_grows_within_its_water_and_mud_regimes(images: torch.Tensor, corrupted: dict) -> None:
    # severities 1-3 add pale water drops, 4-5 opaque mud: two different effects
    d = _distances(images, corrupted, "spatter")
    assert d[0] < d[1] < d[2] and d[3] < d[4]


def test_gaussian_helper_matches_skimage(images: torch.Tensor) -> None:
    batch = images.permute(0, 2, 3, 1).numpy().astype(np.float64)
    for sigma in (0.4, 1.0):
        expected = np.stack([skimage_gaussian(image, sigma=sigma, channel_axis=-1) for image in batch])
        np.testing.assert_allclose(_gaussian(batch, sigma), expected, atol=1e-12)


@pytest.mark.parametrize("shape", [(32, 32), (20, 28)])
def test_clipped_zoom_matches_scipy(shape: tuple[int, int]) -> None:
    image = np.random.default_rng(1).random(shape)
    for factor in (1.0, 1.06, 1.25, 1.75, 2.25):
        crop = [int(np.ceil(n / factor)) for n in shape]
        top = [(n - c) // 2 for n, c in zip(shape, crop)]
        zoomed = scipy_zoom(image[top[0]:top[0] + crop[0], top[1]:top[1] + crop[1]], factor, order=1)
        trim = [(z - n) // 2 for z, n in zip(zoomed.shape, shape)]
        expected = zoomed[trim[0]:trim[0] + shape[0], trim[1]:trim[1] + shape[1]]
        np.testing.assert_allclose(_clipped_zoom(image, factor), expected, atol=1e-9)


# Snow and zoom_blur of a few digits at severity 5, digested; run under a given OpenBLAS kernel.
CORRUPT_DIGEST = """
import hashlib, numpy as np, torch
from sklearn.datasets import load_digits
import torch.nn.functional as F
from autoft_core.data.corruptions import corrupt
gray = torch.tensor(load_digits().images[:8], dtype=torch.float32).unsqueeze(1) / 16
images = F.interpolate(gray, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1).repeat(1, 3, 1, 1)
corrupted = (corrupt(images, c, 5, seed=0).numpy().tobytes() for c in ("snow", "zoom_blur"))
print(hashlib.sha256(b"".join(corrupted)).hexdigest())
"""


def _has_avx512() -> bool:
    return is_x86_64() and "avx512f" in Path("/proc/cpuinfo").read_text()


@pytest.mark.skipif(not _has_avx512(), reason="needs a CPU with AVX-512 to run OpenBLAS's widest kernels")
def test_snow_and_zoom_blur_do_not_depend_on_the_cpus_blas_kernel() -> None:
    digests = {core: subprocess.run([sys.executable, "-c", CORRUPT_DIGEST],
                                    env={**os.environ, "OPENBLAS_CORETYPE": core},
                                    capture_output=True, text=True, timeout=120, check=True).stdout
               for core in ("SkylakeX", "Haswell")}  # AVX-512 and AVX2 kernels (a matrix product differed)
    assert digests["SkylakeX"] == digests["Haswell"] != ""


def test_motion_kernel_is_imagemagicks_one_sided_line() -> None:
    kernel = _motion_kernel(radius=6, sigma=2, angle=0)
    centre = kernel.shape[0] // 2
    assert kernel.sum() == pytest.approx(1)
    assert np.count_nonzero(kernel) == 13 and np.count_nonzero(kernel[centre, centre:]) == 13
    assert np.all(np.diff(kernel[centre, centre:]) < 0)


def test_other_sizes_and_empty_batch() -> None:
    for shape in [(2, 3, 20, 28), (1, 3, 8, 8)]:
        batch = torch.rand(shape)
        for name in CORRUPTIONS:
            out = corrupt(batch, name, 5, seed=3)
            assert out.shape == batch.shape and out.min() >= 0 and out.max() <= 1
    assert corrupt(torch.rand(0, 3, 32, 32), "snow", 2).shape == (0, 3, 32, 32)


def test_bad_arguments_list_the_valid_choices(images: torch.Tensor) -> None:
    with pytest.raises(BadArgumentError, match="fog.*frost, gaussian_blur"):
        corrupt(images, "fog", 1)
    for severity in (0, 6, 2.5, True):
        with pytest.raises(BadArgumentError, match="1, 2, 3, 4, 5"):
            corrupt(images, "snow", severity)
    with pytest.raises(BadArgumentError):
        corrupt(images[:, 0], "snow", 1)
