"""Reading image folders (data.image_folder): 16-bit images keep their values, images of no fixed range or
too large give one clear line, and the fingerprint covers exactly the images `scan` lists."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoft_core.data.image_folder import fingerprint, load_images, scan
from autoft_core.errors import AutoFTError


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_a_16_bit_image_is_scaled_from_65535_not_clipped_to_white(tmp_path, suffix):
    values = np.random.default_rng(0).integers(0, 65536, (8, 12)).astype(np.uint16)
    file = tmp_path / f"deep{suffix}"
    Image.fromarray(values).save(file)
    assert Image.open(file).mode.startswith("I;16")
    x = load_images([file], 8)[0]  # the shorter side is already 8: only the centre crop
    assert np.allclose(x.numpy(), values[:, 2:10] / 65535, atol=1e-6)


@pytest.mark.parametrize("mode, array", [("F", np.full((8, 8), 0.5, np.float32)),
                                         ("I", np.full((8, 8), 70000, np.int32))])
def test_a_32_bit_image_of_no_fixed_range_is_refused_in_one_line(tmp_path, mode, array):
    file = tmp_path / "wide.tif"
    Image.fromarray(array).save(file)
    with pytest.raises(AutoFTError, match=f"{file}.*mode {mode}.*save it as 8-bit") as caught:
        load_images([file], 8)
    assert "\n" not in str(caught.value)


def test_a_too_large_image_says_so_and_to_shrink_it(tmp_path, monkeypatch):
    file = tmp_path / "huge.png"
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(file)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 480 pixels: more than twice it, PIL refuses
    with pytest.raises(AutoFTError, match=f"could not read image {file}: too large .*shrink or remove it"):
        load_images([file], 8)


def _save(file: Path, side: int) -> None:
    Image.fromarray(np.zeros((side, side, 3), np.uint8)).save(file)


def test_the_fingerprint_sees_changed_images_behind_a_symlinked_class_folder(tmp_path):
    elsewhere, root = tmp_path / "elsewhere" / "cat", tmp_path / "folder"
    elsewhere.mkdir(parents=True)
    (root / "dog").mkdir(parents=True)
    os.symlink(elsewhere, root / "cat")
    _save(elsewhere / "0.png", 8)
    _save(root / "dog" / "0.png", 8)
    assert scan(root, "source folder").files == (root / "cat" / "0.png", root / "dog" / "0.png")
    before = fingerprint(root)
    _save(elsewhere / "0.png", 9)
    assert fingerprint(root) != before
    changed = fingerprint(root)
    _save(elsewhere / "1.png", 8)
    assert fingerprint(root) != changed
