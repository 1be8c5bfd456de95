"""Images from folders in ImageFolder layout (ROOT/<class>/<image>), for the `folder` setup.

Listing is cheap and torch-free (the CLI fingerprints folders to key their runs); loading decodes with
PIL, resizes the shorter side to the image size and centre-crops a square, as torchvision's usual
evaluation transform does, giving float32 (N, 3, S, S) in [0, 1] (16-bit greyscale scaled from
[0, 65535]; 32-bit integer or float images, of no fixed range, are refused). Every problem is an AutoFTError
naming the folder or file and the fix.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import AutoFTError, MissingFileError

if TYPE_CHECKING:
    import torch
    from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val", "test")
LAYOUT = "an ImageFolder: one sub-folder of images per class, e.g. DIR/cat/001.jpg, DIR/dog/002.png"
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")  # PIL's 16-bit greyscale modes: white is 65535


@dataclass(frozen=True)
class FolderIndex:
    """The classes of a folder (sorted sub-folder names) and its image files with their class index."""

    root: Path
    classes: tuple[str, ...]
    files: tuple[Path, ...]
    labels: tuple[int, ...]


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _listing(root: Path) -> dict[str, list[Path]]:
    """Each class sub-folder of `root` (sorted names; symlinks followed) with its images: what `scan` indexes."""
    return {name: _images_in(root / name)
            for name in sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))}


def scan(root: Path, what: str) -> FolderIndex:
    """The classes and images under `root` (`what` names it in messages: "source folder", ...)."""
    if not root.exists():
        raise MissingFileError(what, root, f"Give a folder laid out as {LAYOUT}.")
    if not root.is_dir():
        raise AutoFTError(f"{what} {root} is a file, not a folder; give {LAYOUT}")
    listing = _listing(root)
    if not listing:
        raise AutoFTError(f"{what} {root} has no class sub-folders; it must be {LAYOUT}")
    files, labels = [], []
    for label, (name, images) in enumerate(listing.items()):
        if not images:
            raise AutoFTError(f"{what} {root}: class folder {name}/ holds no images "
                              f"({', '.join(IMAGE_EXTENSIONS)}); add some or remove the folder")
        files += images
        labels += [label] * len(images)
    return FolderIndex(root, tuple(listing), tuple(files), tuple(labels))


def has_splits(root: Path) -> bool:
    """Whether `root` holds train/, val/ and test/ (each an ImageFolder) rather than classes."""
    return root.is_dir() and all((root / split).is_dir() for split in SPLITS)


def _listed(root: Path) -> list[Path]:
    """The image files `scan` indexes under `root`, or under each of its train/, val/ and test/."""
    roots = [root / split for split in SPLITS] if has_splits(root) else [root]
    return [file for folder in roots for images in _listing(folder).values() for file in images]


def fingerprint(*paths: Path | None) -> str:
    """A short hash of the names, sizes and modification times of `paths`' files (of a folder: the images
    `scan` lists, behind symlinks too): it changes when an image is added, removed or rewritten, so runs on
    changed data are not answered from the store."""
    digest = hashlib.sha256()
    for path in paths:
        if path is None:
            continue
        digest.update(str(path).encode())
        files = sorted(_listed(path)) if path.is_dir() else [path]
        for file in files:
            if file.exists():
                stat = file.stat()
                digest.update(f"{file.relative_to(path) if path.is_dir() else ''}:{stat.st_size}:"
                              f"{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def load_images(files: list[Path] | tuple[Path, ...], size: int) -> "torch.Tensor":
    """The images as float32 (N, 3, size, size) in [0, 1]: RGB, shorter side resized, centre-cropped."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import functional as TF

    out = torch.empty(len(files), 3, size, size)
    for i, file in enumerate(files):
        try:
            with Image.open(file) as image:
                decoded, white = _resizable(image, file)
                pixels = np.asarray(TF.center_crop(TF.resize(decoded, size), size), dtype=np.float32) / white
                out[i] = torch.from_numpy(np.atleast_3d(pixels).transpose(2, 0, 1))  # greyscale: to all 3
        except Image.DecompressionBombError as exc:
            raise AutoFTError(f"could not read image {file}: too large ({str(exc).rstrip('.')}); shrink or "
                              "remove it") from exc
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise AutoFTError(f"could not read image {file} ({exc}); replace or remove it") from exc
    return out


def _resizable(image: "Image.Image", file: Path) -> tuple["Image.Image", float]:
    """The image as 8-bit RGB, or 16-bit greyscale as floats, with the value of white (255 or 65535)."""
    if image.mode in SIXTEEN_BIT:
        return image.convert("F"), 65535
    if image.mode in ("I", "F"):
        kind = "integers" if image.mode == "I" else "floats"
        raise AutoFTError(f"image {file} holds 32-bit {kind} (mode {image.mode}), which have no fixed range; save it "
                          "as 8-bit or 16-bit")
    return image.convert("RGB"), 255
