"""The embedded data set: scikit-learn's 8x8 handwritten digit glyphs rendered as CIFAR-like 32x32 colour images.

Each image draws, from one seeded generator and in one vectorised pass: a glyph of its digit, an affine
placement (height, aspect, rotation, shear, position), a stroke threshold (thin or bold strokes), a
low-contrast ink colour with a fine stripe pattern on a smooth two-colour textured background. The
digit is told apart from the background by small luminance and texture differences only, as objects
in CIFAR are, so that CIFAR-10-C's noise, blur and weather corruptions hurt a model trained on clean
renders. The glyphs are split once, by DATASET_SEED, into a source half and a target half, so the
target's handwriting is never seen in pretraining; each half is rendered as many times as its pools need.
The renders are kept on disk (`<cache>/data/`, safetensors) under a hash of this file, torch's version
and scikit-learn's, so a process after the first loads them (about 0.1 s) instead of importing
scikit-learn and rendering again (about 4 s on one CPU thread); any change to the code re-renders.
"""
from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError

from .. import kept_tensors
from ..paths import cache_dir

DATASET_SEED = 0
IMAGE_SIZE = 32
PARTS = ("source", "target")
PER_DIGIT = {"source": 1000, "target": 600}  # renders of each digit in each part


@dataclass(frozen=True)
class Style:
    """The ranges each image's rendering parameters are drawn from (uniformly)."""

    height: tuple[float, float] = (18.0, 24.0)  # digit height in pixels
    aspect: tuple[float, float] = (0.8, 1.2)  # width / height
    rotation: float = 6.0  # degrees, either way
    shear: float = 0.1
    position: float = 0.25  # offset from the centre, as a fraction of the room left
    threshold: tuple[float, float] = (0.35, 0.6)  # stroke threshold on the upsampled glyph: bold to thin
    sharpness: float = 12.0  # steepness of the stroke edge
    contrast: tuple[float, float] = (0.05, 0.25)  # ink value above the background's
    stripes: float = 0.5  # largest stripe amplitude on the ink
    stripe_period: tuple[float, float] = (2.0, 3.0)  # pixels
    coarse_texture: float = 0.5  # background texture amplitude at 4x4 and 16x16 cells
    fine_texture: float = 0.3


STYLE = Style()


@lru_cache(maxsize=1)
def glyphs() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 glyphs as (N, 8, 8) float32 in [0, 1] and their digits (N,) int64."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return torch.tensor(bunch.images, dtype=torch.float32) / 16.0, torch.tensor(bunch.target, dtype=torch.long)


@lru_cache(maxsize=1)
def glyph_parts() -> dict[str, torch.Tensor]:
    """Glyph indices of the source and target halves, stratified by digit, fixed by DATASET_SEED."""
    _, digits = glyphs()
    generator = torch.Generator().manual_seed(DATASET_SEED)
    halves: dict[str, list[torch.Tensor]] = {part: [] for part in PARTS}
    for digit in range(10):
        idx = torch.nonzero(digits == digit).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        halves["source"].append(idx[:len(idx) // 2])
        halves["target"].append(idx[len(idx) // 2:])
    return {part: torch.cat(chosen).sort().values for part, chosen in halves.items()}


def _uniform(generator: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(N,) hue, saturation, value in [0, 1] -> (N, 3) RGB."""
    def channel(k: int) -> torch.Tensor:
        phase = (k + h * 6) % 6
        return v - v * s * torch.clamp(torch.minimum(phase, 4 - phase), 0, 1)
    return torch.stack([channel(5), channel(3), channel(1)], dim=1)


def _smooth_noise(generator: torch.Generator, n: int, cells: int) -> torch.Tensor:
    """(N, 1, 32, 32) noise in about [-0.5, 0.5], bicubically upsampled from cells x cells."""
    coarse = torch.rand(n, 1, cells, cells, generator=generator) - 0.5
    return F.interpolate(coarse, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bicubic", align_corners=False)


def _ink_masks(glyph: torch.Tensor, generator: torch.Generator, style: Style) -> torch.Tensor:
    """(N, 1, 32, 32) stroke coverage in [0, 1]: each glyph placed by a random affine map, then thresholded."""
    n = len(glyph)
    height = _uniform(generator, n, *style.height)
    width = height * _uniform(generator, n, *style.aspect)
    angle = _uniform(generator, n, -style.rotation, style.rotation) * math.pi / 180
    shear = _uniform(generator, n, -style.shear, style.shear)
    room = (IMAGE_SIZE - height) / IMAGE_SIZE * style.position
    offset = torch.stack([_uniform(generator, n, -1, 1), _uniform(generator, n, -1, 1)], dim=1) * room[:, None]
    cos, sin = torch.cos(angle), torch.sin(angle)
    linear = torch.stack([torch.stack([cos, shear - sin], 1) * (IMAGE_SIZE / width)[:, None],
                          torch.stack([sin, cos], 1) * (IMAGE_SIZE / height)[:, None]], dim=1)
    theta = torch.cat([linear, -(linear @ offset[:, :, None])], dim=2)  # output coords -> glyph coords
    grid = F.affine_grid(theta, [n, 1, IMAGE_SIZE, IMAGE_SIZE], align_corners=False)
    coverage = F.grid_sample(glyph[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    threshold = _uniform(generator, n, *style.threshold)[:, None, None, None]
    return torch.sigmoid((coverage - threshold) * style.sharpness)


def _stripes(generator: torch.Generator, n: int, style: Style) -> torch.Tensor:
    """(N, 1, 32, 32) sine stripes of random orientation, period, phase and amplitude."""
    angle = _uniform(generator, n, 0, math.pi)[:, None, None, None]
    period = _uniform(generator, n, *style.stripe_period)[:, None, None, None]
    phase = _uniform(generator, n, 0, 2 * math.pi)[:, None, None, None]
    amplitude = _uniform(generator, n, 0, style.stripes)[:, None, None, None]
    rows, cols = torch.meshgrid(torch.arange(float(IMAGE_SIZE)), torch.arange(float(IMAGE_SIZE)), indexing="ij")
    return amplitude * torch.sin(2 * math.pi * (cols * torch.cos(angle) + rows * torch.sin(angle)) / period + phase)


def render(glyph: torch.Tensor, generator: torch.Generator, style: Style = STYLE) -> torch.Tensor:
    """Glyphs (N, 8, 8) in [0, 1] -> images (N, 3, 32, 32) float32 in [0, 1], every random draw from `generator`."""
    n = len(glyph)
    ink = _ink_masks(glyph, generator, style)
    hue, value = _uniform(generator, n, 0, 1), _uniform(generator, n, 0.2, 0.9)
    near = _hsv_to_rgb(hue, _uniform(generator, n, 0.2, 0.9), value)
    far = _hsv_to_rgb((hue + _uniform(generator, n, -0.15, 0.15)) % 1, _uniform(generator, n, 0.2, 0.9),
                      (value + _uniform(generator, n, -0.2, 0.2)).clamp(0, 1))
    texture = (0.5 + style.coarse_texture * _smooth_noise(generator, n, 4)
               + style.fine_texture * _smooth_noise(generator, n, 16)).clamp(0, 1)
    background = near[:, :, None, None] + (far - near)[:, :, None, None] * texture
    ink_value = (value + _uniform(generator, n, *style.contrast)).clamp(0.05, 1)  # bright backgrounds: less contrast
    ink_colour = _hsv_to_rgb((hue + _uniform(generator, n, 0.15, 0.85)) % 1, _uniform(generator, n, 0.3, 1.0),
                             ink_value)
    foreground = ink_colour[:, :, None, None] + _stripes(generator, n, style)
    return (background * (1 - ink) + foreground * ink).clamp(0, 1).contiguous()


def _render_part(part: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every render of one part, drawn afresh (see `rendered`)."""
    all_glyphs, digits = glyphs()
    generator = torch.Generator().manual_seed(DATASET_SEED + 1 + PARTS.index(part))
    own = glyph_parts()[part]
    count = PER_DIGIT[part]
    labels = torch.arange(10).repeat_interleave(count)
    chosen = []
    for digit in range(10):
        candidates = own[digits[own] == digit]
        chosen.append(candidates[torch.randint(len(candidates), (count,), generator=generator)])
    return render(all_glyphs[torch.cat(chosen)], generator, STYLE), labels


def render_cache_path(part: str) -> Path:
    """Where one part's renders are kept: named by a hash of everything that could change their pixels
    (this file, torch's and scikit-learn's versions)."""
    key = hashlib.sha256(Path(__file__).read_bytes())
    key.update(f"{part}|{torch.__version__}|{metadata.version('scikit-learn')}".encode())
    return cache_dir() / "data" / f"digits-{part}-{key.hexdigest()[:16]}.safetensors"


@lru_cache(maxsize=len(PARTS))
def rendered(part: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every render of one part: PER_DIGIT[part] images of each digit (digit-major order) from that part's
    glyphs, as (N, 3, 32, 32) float32 in [0, 1] and digits (N,) int64; fixed by DATASET_SEED. Read from
    the disk cache when it holds them (checked against their SHA-256: a damaged file is rendered again, with
    a warning), else rendered and stored (atomically; a cache that cannot be written only costs the next
    process a render)."""
    path = render_cache_path(part)
    try:
        stored, _ = kept_tensors.load(path)
        return stored["x"], stored["y"]
    except FileNotFoundError:
        pass  # not rendered yet
    except (kept_tensors.DamagedFile, KeyError) as exc:
        warnings.warn(f"kept digits renders {path} are damaged ({exc}); rendering them again", stacklevel=2)
    x, y = _render_part(part)
    try:
        kept_tensors.save(path, {"x": x, "y": y})
    except (OSError, SafetensorError) as exc:
        warnings.warn(f"could not keep the digits renders in {path.parent} ({exc}); each process renders them",
                      stacklevel=2)
    return x, y
