"""Images from folders in ImageFolder layout (ROOT/<class>/<image>), for the `folder` setup.

Listing is cheap and torch-free (the CLI fingerprints folders to key their runs); loading decodes with
PIL, resizes the shorter side to the image size and centre-crops a square, as torchvision's usual
evaluation transform does, giving float32 (N, 3, S, S) in [0, 1]. Every problem is an AutoFTError
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

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val", "test")
LAYOUT = "an ImageFolder: one sub-folder of images per class, e.g. DIR/cat/001.jpg, DIR/dog/002.png"


@dataclass(frozen=True)
class FolderIndex:
    """The classes of a folder (sorted sub-folder names) and its image files with their class index."""

    root: Path
    classes: tuple[str, ...]
    files: tuple[Path, ...]
    labels: tuple[int, ...]


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def scan(root: Path, what: str) -> FolderIndex:
    """The classes and images under `root` (`what` names it in messages: "source folder", ...)."""
    if not root.exists():
        raise MissingFileError(what, root, f"Give a folder laid out as {LAYOUT}.")
    if not root.is_dir():
        raise AutoFTError(f"{what} {root} is a file, not a folder; give {LAYOUT}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise AutoFTError(f"{what} {root} has no class sub-folders; it must be {LAYOUT}")
    files, labels = [], []
    for label, name in enumerate(classes):
        images = _images_in(root / name)
        if not images:
            raise AutoFTError(f"{what} {root}: class folder {name}/ holds no images "
                              f"({', '.join(IMAGE_EXTENSIONS)}); add some or remove the folder")
        files += images
        labels += [label] * len(images)
    return FolderIndex(root, tuple(classes), tuple(files), tuple(labels))


def has_splits(root: Path) -> bool:
    """Whether `root` holds train/, val/ and test/ (each an ImageFolder) rather than classes."""
    return root.is_dir() and all((root / split).is_dir() for split in SPLITS)


def fingerprint(*paths: Path | None) -> str:
    """A short hash of the names, sizes and modification times of every file under `paths`: it changes
    when a file is added, removed or rewritten, so runs on changed data are not answered from the store."""
    digest = hashlib.sha256()
    for path in paths:
        if path is None:
            continue
        digest.update(str(path).encode())
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
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
                image = TF.center_crop(TF.resize(image.convert("RGB"), size), size)
                out[i] = torch.from_numpy(np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise AutoFTError(f"could not read image {file} ({exc}); replace or remove it") from exc
    return out
