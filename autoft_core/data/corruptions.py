"""The 14 CIFAR-10-C corruptions at severities 1-5, with CIFAR-10-C's own 32-pixel constants or
ImageNet-C's 224-pixel ones (`constants`; `constants_for(size)` picks ImageNet-C's from 64 px up).

Source: Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR 2019). Constants and algorithms are those of the scripts that made CIFAR-10-C and
ImageNet-C, `ImageNet-C/create_c/make_cifar_c.py` and `make_imagenet_c.py` in github.com/hendrycks/robustness
(the two differ only in their constants for these 14 corruptions, and in the frost photos' 0.2x resize
for CIFAR); the code is new. It corrupts a whole batch at once and draws all randomness from one
`numpy.random.Generator` seeded by `seed`, never the global RNG, so the draws depend on the batch: the
same seed on another batch (or a chunk of one) gives other noise. As in the recipe, images are taken
to 0..255 uint8 levels, corrupted, clipped to [0, 255] and truncated to uint8 levels (its `np.uint8`
cast) before dividing by 255.

Deviations from the recipe:
- motion_blur, and the streaks of snow: the recipe calls ImageMagick's MotionBlurImage through Wand,
  which is not available. Its kernel is rebuilt and applied with `cv2.filter2D`: a one-sided line of
  2*ceil(radius)+1 taps along the angle, tap i weighted exp(-i^2 / 2 sigma^2) at the offset
  (ceil(i cos a - 0.5), ceil(i sin a - 0.5)), edge pixels repeated (ImageMagick's default virtual
  pixels), the result rounded to uint8 levels as ImageMagick's PNG output is.
- frost: the recipe blends in random crops of frost photographs (the first five of its six), which are
  not shipped here. Five fixed procedural textures stand in, seeded by a constant so that they are the
  same for every call: multi-scale Gaussian noise around the mean colour, and with the within-crop
  standard deviation, of each of those photos after the recipe's 0.2x resize (measured on the copies in
  the imagecorruptions 1.1.2 wheel). The texture choice, random crop and blend constants are the recipe's.
- spatter: the liquid layer is clipped to [0, 1] before its uint8 cast, where the recipe's cast would
  wrap values above 1 around (rare at these constants).
- Sizes other than 32x32 (224x224 for ImageNet-C): where the recipe hard-codes its size, the image's
  own height and width are used (zoom crops per axis, glass-blur loop bounds, pixelate sizes of at least
  one pixel, frost texture size). ImageNet-C's frost crops full-size photos; the stand-in textures are
  the same for both constant sets (their grain is measured on the CIFAR-size photos).
Not deviations: glass_blur's per-pixel loop becomes one vectorised gather per pass with the same result
(see `_glass_blur`), and the clipped zoom of zoom_blur and snow is scipy's order-1 zoom as two weighted
taps per pixel, computed elementwise so that no BLAS kernel (whose sums depend on the CPU) is involved.

Where CIFAR-10-C's constants are not monotone in strength (the tests check what does hold instead):
- saturate: severities 1-2 desaturate (S x 0.3, x 0.1), 3-5 oversaturate (x 1.5, x 2 + 0.1, x 2.5 + 0.2);
  strength grows within each regime only. Colours at S >= 2/3 (such as the digits' S = 0.85) reach S = 1
  at severity 3 already, so severities 3-5 then give the same image.
- motion_blur: severities 3 and 4 are (radius 6, sigma 2) and (radius 8, sigma 2). ImageMagick's kernel
  has taps 0-12 at radius 6 and 0-16 at radius 8; taps 13-16 weigh below 1e-9, so both give the same image.
- glass_blur: severities 1-3 are one pass with blur sigma 0.05, 0.25, 0.4, and 4-5 two passes with 0.25,
  0.4. The second pass is what moves pixels further; a larger sigma hardly changes the distance from
  smooth images (on the digits it shrinks slightly), so only one pass < two passes holds.
- frost: severity 3 -> 4 only lowers the image's weight (0.9 -> 0.85) under the same frost (0.4), which
  brings the output closer to the image when the frost is brighter than about a third of it; the
  frost-to-image ratio (0.2, 0.3, 0.44, 0.47, 0.6) does grow at every step.
- spatter: severities 1-3 add water, 4-5 mud; strength grows within each regime.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from io import BytesIO
from numbers import Integral
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage.color import hsv2rgb, rgb2hsv

from ..errors import BadArgumentError

CORRUPTIONS: tuple[str, ...] = (
    "frost", "gaussian_blur", "gaussian_noise", "glass_blur", "impulse_noise", "jpeg_compression",
    "motion_blur", "pixelate", "saturate", "shot_noise", "snow", "spatter", "speckle_noise", "zoom_blur",
)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

Row = Any  # one severity's constants of one corruption: a number, a tuple or an array of zoom factors
# An image batch (N, H, W, 3) in 0..255, a severity's constants and the call's generator -> the batch, 0..255.
Corruption = Callable[[np.ndarray, Row, np.random.Generator], np.ndarray]


# ---------------------------------------------------------------- helpers


def _gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    """Blur axes 1 and 2 (height, width) of a batch as skimage.filters.gaussian does (nearest edge, 4 sigma)."""
    sigmas = [0.0] * x.ndim
    sigmas[1] = sigmas[2] = sigma
    return gaussian_filter(x, sigma=sigmas, mode="nearest", truncate=4.0)


@lru_cache(maxsize=256)
def _clipped_zoom_taps(n: int, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), each (n, 2), of the recipe's clipped zoom along one axis (centre crop, scipy
    order-1 zoom, centre trim): output i = weights[i, 0]·x[indices[i, 0]] + weights[i, 1]·x[indices[i, 1]]."""
    crop = int(np.ceil(n / factor))
    top = (n - crop) // 2
    out = int(round(crop * factor))  # scipy.ndimage.zoom's output size
    # scipy (grid_mode=False) samples input coordinate o * (crop - 1) / (out - 1) for output o
    coords = np.arange(out) * ((crop - 1) / (out - 1)) if out > 1 else np.zeros(1)
    lo = np.clip(np.floor(coords).astype(int), 0, crop - 1)
    hi = np.minimum(lo + 1, crop - 1)
    frac = coords - lo
    weights = np.stack([1 - frac, np.where(hi == lo, 0.0, frac)], axis=1)
    weights[hi == lo, 0] += frac[hi == lo]  # both taps on one pixel (the last): their weights summed
    trim = (out - n) // 2
    return (top + np.stack([lo, hi], axis=1))[trim:trim + n], weights[trim:trim + n]


def _zoom_axis(x: np.ndarray, factor: float, axis: int) -> np.ndarray:
    """The clipped zoom along `axis` (-2 or -1) as two weighted taps per output pixel."""
    indices, weights = _clipped_zoom_taps(x.shape[axis], float(factor))
    weights = weights.astype(x.dtype).reshape((-1, 2) + (1,) * (-1 - axis))
    return (np.take(x, indices[:, 0], axis=axis) * weights[:, 0]
            + np.take(x, indices[:, 1], axis=axis) * weights[:, 1])


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom every image of a (..., H, W) stack into its centre by `factor`, keeping its size. Elementwise,
    not a matrix product: BLAS kernels sum in an order that depends on the CPU (AVX-512 against AVX2 gave
    other snow and zoom_blur images, hence other accuracies), elementwise products and sums do not."""
    return _zoom_axis(_zoom_axis(x, factor, -2), factor, -1)


def _motion_kernel(radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's MotionBlurImage taps as a cv2.filter2D kernel (one-sided Gaussian-weighted line)."""
    width = 2 * int(np.ceil(radius)) + 1
    taps = np.arange(width)
    weights = np.exp(-taps.astype(float) ** 2 / (2 * sigma ** 2))
    theta = np.deg2rad(angle)
    dx = np.ceil(taps * np.cos(theta) - 0.5).astype(int)
    dy = np.ceil(taps * np.sin(theta) - 0.5).astype(int)
    kernel = np.zeros((2 * width - 1, 2 * width - 1), dtype=np.float32)
    np.add.at(kernel, (width - 1 + dy, width - 1 + dx), weights / weights.sum())
    return kernel


def _motion_blur_batch(x: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
    """Motion-blur each image of a (N, H, W[, C]) 0..255 batch along its own angle, rounded to uint8 levels."""
    out = np.empty(x.shape, dtype=np.float32)
    for i, angle in enumerate(angles):
        out[i] = cv2.filter2D(x[i].astype(np.float32), -1, _motion_kernel(radius, sigma, angle),
                              borderType=cv2.BORDER_REPLICATE)
    return np.clip(np.round(out), 0, 255)


def _plain(x: np.ndarray) -> np.ndarray:
    """A 0..255 batch as contiguous uint8 images for PIL and OpenCV."""
    return np.ascontiguousarray(np.clip(x, 0, 255).astype(np.uint8))


# ---------------------------------------------------------------- noise


def _gaussian_noise(x: np.ndarray, c: Row, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise of std c (on [0, 1]): sensor read noise in low light."""
    return (x / 255 + rng.normal(scale=c, size=x.shape)) * 255


def _shot_noise(x: np.ndarray, c: Row, rng: np.random.Generator) -> np.ndarray:
    """Poisson photon-count noise with c photons at full intensity: fewer photons, more noise."""
    return rng.poisson(x / 255 * c) / c * 255


def _impulse_noise(x: np.ndarray, c: Row, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper noise on a fraction c of the values (skimage's 's&p', half salt): bit errors."""
    flipped = rng.random(x.shape) < c
    salted = rng.random(x.shape) < 0.5
    return np.where(flipped, np.where(salted, 255.0, 0.0), x)


def _speckle_noise(x: np.ndarray, c: Row, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative Gaussian noise of std c: noise that scales with the intensity."""
    x = x / 255
    return (x + x * rng.normal(scale=c, size=x.shape)) * 255


# ---------------------------------------------------------------- blur


def _gaussian_blur(x: np.ndarray, c: Row, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur of std c pixels: an out-of-focus lens."""
    return _gaussian(x / 255, c) * 255


def _glass_blur(x: np.ndarray, c: Row, rng: np.random.Generator) -> np.ndarray:
    """Blur, move each pixel's up/left neighbour into it, blur again: looking through frosted glass.

    The recipe's per-pixel loop "swaps" with `x[h, w], x[h', w'] = x[h', w'], x[h, w]` on numpy views,
    which copies the neighbour into (h, w) and leaves the neighbour as it was; since the sweep runs from
    the bottom right and the neighbour is up or left, it is never one already written. So each pass is
    one simultaneous gather, done here for the whole batch at once (same result as the loop).
    """
    sigma, delta, iterations = c
    n, height, width, _ = x.shape
    levels = np.floor(_gaussian(x / 255, sigma) * 255)  # the recipe's uint8 cast
    images = np.arange(n)[:, None, None]
    rows = np.arange(delta + 1, height - delta + 1)[None, :, None]  # the recipe's range(32 - d, d, -1)
    cols = np.arange(delta + 1, width - delta + 1)[None, None, :]
    for _ in range(iterations):
        dx, dy = rng.integers(-delta, delta, size=(2, n, rows.size, cols.size))  # randint(-d, d): [-d, d)
        levels[images, rows, cols] = levels[images, rows + dy, cols + dx]
    return _gaussian(levels / 255, sigma) * 255


def _motion_blur(x: np.ndarray, c: Row, rng: np.random.Generator) -> np.ndarray:
    """Blur along a random line within 45 degrees of horizontal (ImageMagick kernel): camera shake."""
    radius, sigma = c
    return _motion_blur_batch(x, radius, sigma, rng.uniform(-45, 45, size=len(x)))


def _zoom_blur(x: np.ndarray, c: Row, rng: np.random.Generator) -> np.ndarray:
    """Average of the image and its centre zooms up to the severity's factor: moving towards the camera."""
    factors = c
    x = np.ascontiguousarray((x / 255).astype(np.float32).transpose(0, 3, 1, 2))  # zoom the last two axes
    total = x.copy()
    for factor in factors:
        total += _clipped_zoom(x, factor)
    return (total / (len(factors) + 1) * 255).transpose(0, 2, 3, 1)


# ---------------------------------------------------------------- weather


# Mean RGB and within-32-pixel-crop std of the recipe's frost photos 1-5 after its 0.2x resize.
_FROST_MEANS = ((76.9, 148.2, 164.7), (198.4, 202.8, 212.1), (198.0, 202.3, 211.6),
                (142.8, 157.7, 170.3), (102.3, 113.6, 125.4))
_FROST_STDS = (15.7, 18.3, 18.4, 26.0, 34.4)
_FROST_TEXTURE_SEED = 2019


@lru_cache(maxsize=8)
def _frost_textures(height: int, width: int) -> np.ndarray:
    """Five fixed frost-like textures (5, 3H, 4W, 3) in 0..255: grain plus cloudy patches, tinted."""
    shape = (3 * height, 4 * width)
    textures = np.empty((len(_FROST_MEANS), *shape, 3))
    for k, (mean, std) in enumerate(zip(_FROST_MEANS, _FROST_STDS)):
        rng = np.random.default_rng([_FROST_TEXTURE_SEED, k, height, width])
        # grain at 1-8 pixel scales gives the within-crop texture, 32-pixel patches the slow variation
        fine = sum(cv2.resize(rng.normal(size=(-(-shape[0] // s), -(-shape[1] // s))), shape[::-1],
                              interpolation=cv2.INTER_LINEAR) for s in (1, 2, 4, 8))
        coarse = cv2.resize(rng.normal(size=(-(-shape[0] // 32) + 1, -(-shape[1] // 32) + 1)), shape[::-1],
                            interpolation=cv2.INTER_CUBIC)
        shade = std * (fine - fine.mean()) / fine.std() + 0.75 * std * coarse / coarse.std()
        textures[k] = np.clip(np.asarray(mean)[None, None, :] + shade[..., None], 0, 255)
    textures.setflags(write=False)
    return textures


def _frost(x: np.ndarray, c: Row, rng: np.random.Generator) -> np.ndarray:
    """Dim the image and add a random crop of one of five frost textures: ice on a lens or window."""
    keep, add = c
    n, height, width, _ = x.shape
    textures = _frost_textures(height, width)
    which = rng.integers(5, size=n)
    top = rng.integers(0, textures.shape[1] - height, size=n)
    left = rng.integers(0, textures.shape[2] - width, size=n)
    crops = textures[which[:, None, None], top[:, None, None] + np.arange(height)[None, :, None],
                     left[:, None, None] + np.arange(width)[None, None, :]]
    return keep * x + add * crops


def _snow(x: np.ndarray, c: Row, rng: np.random.Generator) -> np.ndarray:
    """Zoomed, thresholded, motion-blurred flakes (twice, rotated) over a brightened image: snowfall."""
    mean, std, zoom, threshold, radius, sigma, blend = c
    x = (x / 255).astype(np.float32)
    flakes = _clipped_zoom(rng.normal(mean, std, size=x.shape[:3]), zoom)
    flakes[flakes < threshold] = 0
    flakes = np.floor(np.clip(flakes, 0, 1) * 255)
    flakes = _motion_blur_batch(flakes, radius, sigma, rng.uniform(-135, -45, size=len(x)))[..., None] / 255
    grey = x[..., 0] * np.float32(0.299) + x[..., 1] * np.float32(0.587) + x[..., 2] * np.float32(0.114)  # no BLAS
    x = blend * x + (1 - blend) * np.maximum(x, grey[..., None] * 1.5 + 0.5)
    return (x + flakes + flakes[:, ::-1, ::-1]) * 255


def _water(x: np.ndarray, liquid: np.ndarray, strength: float) -> np.ndarray:
    """Pale turquoise water drops shaded by the recipe's edge/distance-transform relief (spatter 1-3)."""
    levels = _plain(liquid * 255)
    emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float32)
    out = np.empty_like(x)
    for i, level in enumerate(levels):
        dist = cv2.distanceTransform(255 - cv2.Canny(level, 50, 150), cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
        dist = cv2.blur(cv2.filter2D(dist, cv2.CV_8U, emboss), (3, 3)).astype(np.float32)
        shade = level * dist
        peak = shade.max()
        shade = shade / peak * strength if peak > 0 else shade
        out[i] = x[i] + shade[..., None] * (np.array([175, 238, 238], dtype=np.float32) / 255)
    return out


def _mud(x: np.ndarray, liquid: np.ndarray, threshold: float, sigma: float) -> np.ndarray:
    """Opaque mud-brown blobs where the blurred liquid mask is dense (spatter 4-5)."""
    mask = _gaussian((liquid > threshold).astype(np.float32), sigma)
    mask[mask < 0.8] = 0
    mask = mask[..., None]
    return x * (1 - mask) + np.array([63, 42, 20], dtype=np.float32) / 255 * mask


def _spatter(x: np.ndarray, c: Row, rng: np.random.Generator) -> np.ndarray:
    """Blurred, thresholded noise as liquid: water drops at severities 1-3, mud at 4-5."""
    mean, std, sigma, threshold, strength, muddy = c
    x = (x / 255).astype(np.float32)
    liquid = _gaussian(rng.normal(mean, std, size=x.shape[:3]), sigma)
    liquid[liquid < threshold] = 0
    out = _mud(x, liquid, threshold, strength) if muddy else _water(x, liquid, strength)
    return out * 255


# ---------------------------------------------------------------- digital


def _saturate(x: np.ndarray, c: Row, rng: np.random.Generator) -> np.ndarray:
    """Scale (and shift) HSV saturation: washed-out colours at severities 1-2, oversaturated at 3-5."""
    scale, shift = c
    hsv = rgb2hsv(x / 255)
    hsv[..., 1] = np.clip(hsv[..., 1] * scale + shift, 0, 1)
    return hsv2rgb(hsv) * 255


def _jpeg_compression(x: np.ndarray, c: Row, rng: np.random.Generator) -> np.ndarray:
    """Save and reload as JPEG at quality c with PIL: lossy compression blocks and ringing."""
    quality = c
    out = np.empty(x.shape)
    for i, image in enumerate(_plain(x)):
        buffer = BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=quality)
        out[i] = np.asarray(Image.open(buffer).convert("RGB"))
    return out


def _pixelate(x: np.ndarray, c: Row, rng: np.random.Generator) -> np.ndarray:
    """Box-downsample to a fraction c of the size and box-upsample back with PIL: low resolution."""
    height, width = x.shape[1:3]
    small = (max(1, int(width * c)), max(1, int(height * c)))
    out = np.empty(x.shape)
    for i, image in enumerate(_plain(x)):
        resized = Image.fromarray(image).resize(small, Image.Resampling.BOX)
        out[i] = np.asarray(resized.resize((width, height), Image.Resampling.BOX))
    return out


_REGISTRY: dict[str, Corruption] = {
    "frost": _frost,
    "gaussian_blur": _gaussian_blur,
    "gaussian_noise": _gaussian_noise,
    "glass_blur": _glass_blur,
    "impulse_noise": _impulse_noise,
    "jpeg_compression": _jpeg_compression,
    "motion_blur": _motion_blur,
    "pixelate": _pixelate,
    "saturate": _saturate,
    "shot_noise": _shot_noise,
    "snow": _snow,
    "spatter": _spatter,
    "speckle_noise": _speckle_noise,
    "zoom_blur": _zoom_blur,
}

# Severities 1-5 of each corruption. CIFAR-10-C: make_cifar_c.py (32 px). Zoom factors are float aranges
# as in the recipe: the end points 1.06 and 1.11 are included by rounding.
CIFAR10_C: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),  # sigma, delta, passes
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),  # radius, sigma
    "zoom_blur": (np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01),
                  np.arange(1, 1.21, 0.01), np.arange(1, 1.26, 0.01)),
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),  # image weight, frost weight
    "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
             (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
    "spatter": ((0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
                (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1)),
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),  # saturation scale, shift
    "jpeg_compression": (80, 65, 58, 50, 40),  # quality
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # size factor
}
# ImageNet-C: make_imagenet_c.py (224 px), for images of at least IMAGENET_C_FROM pixels.
IMAGENET_C: dict[str, tuple] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60, 25, 12, 5, 3),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
    "gaussian_blur": (1, 2, 3, 4, 6),
    "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
    "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
    "zoom_blur": (np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.02),
                  np.arange(1, 1.26, 0.02), np.arange(1, 1.31, 0.03)),
    "frost": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
    "snow": ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
             (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)),
    "spatter": ((0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0), (0.65, 0.3, 2, 0.68, 0.5, 0),
                (0.65, 0.3, 1, 0.65, 1.5, 1), (0.67, 0.4, 1, 0.65, 1.5, 1)),
    "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
    "jpeg_compression": (25, 18, 15, 10, 7),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
}
CONSTANTS = {"cifar10-c": CIFAR10_C, "imagenet-c": IMAGENET_C}
IMAGENET_C_FROM = 64


def constants_for(size: int) -> str:
    """The constants for images of `size` pixels (shorter side): CIFAR-10-C's below IMAGENET_C_FROM,
    ImageNet-C's from there up."""
    return "imagenet-c" if size >= IMAGENET_C_FROM else "cifar10-c"


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0,
            constants: str = "cifar10-c") -> torch.Tensor:
    """images (N, 3, H, W) float32 in [0, 1] -> same shape/dtype, in [0, 1]; deterministic for a seed.
    `constants`: "cifar10-c" or "imagenet-c" (see `constants_for`).

    Raises BadArgumentError (listing the valid choices) for an unknown name, a severity outside 1-5,
    unknown constants or images that are not an (N, 3, H, W) batch.
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise BadArgumentError("corruption", name, CORRUPTIONS)
    if not isinstance(severity, Integral) or isinstance(severity, bool) or severity not in SEVERITIES:
        raise BadArgumentError("severity", severity, SEVERITIES)
    if constants not in CONSTANTS:
        raise BadArgumentError("corruption constants", constants, tuple(CONSTANTS))
    if images.ndim != 4 or images.shape[1] != 3:
        raise BadArgumentError("images shape", tuple(images.shape), "(N, 3, H, W)")
    if len(images) == 0:
        return images.detach().clone()
    pixels = images.detach().to("cpu", torch.float32).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    levels = np.round(pixels.astype(np.float64) * 255)
    out = _REGISTRY[name](levels, CONSTANTS[constants][name][severity - 1], np.random.default_rng(seed))
    quantised = np.floor(np.clip(out, 0, 255)).astype(np.float32) / 255
    return torch.from_numpy(quantised).permute(0, 3, 1, 2).contiguous().to(images.device)
