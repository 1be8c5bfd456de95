"""Tensors kept with their SHA-256 (autoft_core/kept_tensors.py): read back bit for bit; a file cut short, with
bytes overwritten in place, or without a checksum is DamagedFile, not numbers; a file checked once is not hashed
again while its stat stamp holds."""
from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

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


@pytest.fixture
def counted(monkeypatch) -> list[int]:
    """Files stamped once 20 ms old (not RACY_NS), and a list with one item per checksum computed."""
    monkeypatch.setattr(kept_tensors, "RACY_NS", 20_000_000)
    calls: list[int] = []
    hashed = kept_tensors.checksum
    monkeypatch.setattr(kept_tensors, "checksum", lambda tensors: calls.append(1) or hashed(tensors))
    return calls


def _saved_a_while_ago(path: Path) -> None:
    kept_tensors.save(path, _tensors())
    time.sleep(0.03)  # past the (patched) RACY_NS, and past a coarse kernel clock's tick


def test_a_file_checked_once_is_not_hashed_again_while_its_stamp_holds(tmp_path, counted):
    path = tmp_path / "a.safetensors"
    _saved_a_while_ago(path)
    counted.clear()
    first, _ = kept_tensors.load(path)
    again, _ = kept_tensors.load(path)
    assert len(counted) == 1 and all(torch.equal(again[k], v) for k, v in first.items())
    assert [p.name for p in tmp_path.glob("*.safetensors")] == ["a.safetensors"]  # the stamp is not listed


def test_bytes_overwritten_in_place_after_a_check_are_refused(tmp_path, counted):
    path = tmp_path / "a.safetensors"
    _saved_a_while_ago(path)
    kept_tensors.load(path)
    assert kept_tensors.sidecar(path).is_file()
    before = path.stat()
    with open(path, "r+b") as f:  # the same file, the same size, its modification time put back
        f.seek(before.st_size - 40)
        f.write(bytes(8))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(DamagedFile, match="SHA-256 mismatch"):
        kept_tensors.load(path)


@pytest.mark.parametrize("garbage", [b"\xff\xfe not json", b"[1, 2]", b'{"stamp": null, "sha256": null}'])
def test_an_unreadable_stamp_means_a_full_check_then_a_new_stamp(tmp_path, counted, garbage):
    path = tmp_path / "a.safetensors"
    _saved_a_while_ago(path)
    kept_tensors.load(path)
    kept_tensors.sidecar(path).write_bytes(garbage)
    counted.clear()
    kept_tensors.load(path)
    kept_tensors.load(path)
    assert len(counted) == 1 and json.loads(kept_tensors.sidecar(path).read_text())["sha256"]


def test_a_file_changed_just_before_its_check_is_not_stamped(tmp_path):
    path = tmp_path / "a.safetensors"
    kept_tensors.save(path, _tensors())
    kept_tensors.load(path)
    assert not kept_tensors.sidecar(path).exists()  # a change within its timestamp tick would keep the stamp


def test_a_folder_that_cannot_take_the_stamp_loads_all_the_same_without_a_word(tmp_path, counted, monkeypatch):
    path = tmp_path / "a.safetensors"
    _saved_a_while_ago(path)

    def read_only(*args, **kwargs):
        raise PermissionError("Read-only file system")

    monkeypatch.setattr(kept_tensors, "write_atomic", read_only)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensors, _ = kept_tensors.load(path)
    assert torch.equal(tensors["x"], _tensors()["x"]) and not kept_tensors.sidecar(path).exists()


def test_removing_a_kept_file_takes_its_stamp(tmp_path, counted):
    path = tmp_path / "a.safetensors"
    _saved_a_while_ago(path)
    kept_tensors.load(path)
    kept_tensors.remove(path)
    kept_tensors.remove(path)  # gone already: no error
    assert list(tmp_path.iterdir()) == []
