"""Tensors kept with their SHA-256 (autoft_core/kept_tensors.py): read back bit for bit; a file cut short, with
bytes overwritten in place, or without a checksum is DamagedFile, not numbers."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from autoft_core import kept_tensors
from autoft_core.kept_tensors import DamagedFile


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"x": torch.randn(4, 3, 8, 8, generator=g), "y": torch.arange(4), "s": torch.tensor(2.5)}


def test_round_trip_keeps_every_bit_and_the_metadata(tmp_path):
    path = tmp_path / "k" / "a.safetensors"
    kept_tensors.save(path, _tensors(), {"note": "hello"})
    tensors, metadata = kept_tensors.load(path)
    assert metadata == {"note": "hello"}
    assert tensors.keys() == _tensors().keys() and all(torch.equal(tensors[k], v) for k, v in _tensors().items())


@pytest.mark.parametrize("damage", ["cut short", "overwritten", "no checksum"])
def test_a_damaged_file_is_refused(tmp_path, damage):
    path = tmp_path / "a.safetensors"
    kept_tensors.save(path, _tensors())
    blob = bytearray(path.read_bytes())
    if damage == "cut short":
        path.write_bytes(bytes(blob[:len(blob) // 2]))
    elif damage == "overwritten":
        blob[-40:-32] = bytes(8)  # a few bytes of the data, the header intact
        path.write_bytes(bytes(blob))
    else:
        save_file(_tensors(), str(path))
    with pytest.raises(DamagedFile):
        kept_tensors.load(path)


def test_a_missing_file_is_not_damage(tmp_path):
    with pytest.raises(FileNotFoundError):
        kept_tensors.load(tmp_path / "none.safetensors")


def test_the_checksum_sees_dtype_shape_and_each_value():
    base = kept_tensors.checksum(_tensors())
    changed = [{**_tensors(), "y": torch.arange(4, dtype=torch.int32)},
               {**_tensors(), "x": _tensors()["x"].reshape(4, 192)}, {**_tensors(), "s": torch.tensor(2.5000002)}]
    assert all(kept_tensors.checksum(t) != base for t in changed)
    assert kept_tensors.checksum(_tensors()) == base
