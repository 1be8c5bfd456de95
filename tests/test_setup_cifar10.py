"""Cifar10Setup on tiny real-format files, read through the real RobustBench and torchvision loaders.

Every image is constant per channel: red = green = its code v, blue = 255 - v, so a test can tell which
file row an image came from and that channels were moved to NCHW correctly.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar

from autoft_core.compat import import_robustbench
from autoft_core.errors import AutoFTError, BadArgumentError, MissingFileError
from autoft_core.layers import partition
from autoft_core.paths import DataPaths
from autoft_core.setups import cifar10 as cifar10_module
from autoft_core.setups.base import CORRUPTIONS, TaskSpec
from autoft_core.setups.cifar10 import Cifar10Setup

TRAIN_PER_BATCH = 40  # 5 batches -> 200 clean training images, 20 per class, codes 1..200
TEST_IMAGES = 30  # clean test images, codes 201..230
TEST_CODE0 = 201
C_ROWS = 20  # rows of a tiny CIFAR-10-C file, codes 1..20
C_LABELS = np.random.default_rng(0).permutation(np.arange(C_ROWS) % 10).astype(np.uint8)


# --- writers of real-format files -------------------------------------------------------------------------------

def _images(codes: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) uint8 HWC images, red = green = code, blue = 255 - code."""
    images = np.empty((len(codes), 32, 32, 3), dtype=np.uint8)
    images[..., 0] = images[..., 1] = codes[:, None, None]
    images[..., 2] = 255 - codes[:, None, None]
    return images


def _write_batch(path: Path, codes: np.ndarray, labels: np.ndarray) -> None:
    """A cifar-10-batches-py batch: rows of 3072 bytes in CHW order, labels as a list."""
    data = _images(codes).transpose(0, 3, 1, 2).reshape(len(codes), -1)
    with open(path, "wb") as f:
        pickle.dump({"data": data, "labels": labels.tolist()}, f)


def write_clean(root: Path) -> Path:
    """A tiny torchvision-format CIFAR-10 under root/cifar-10-batches-py; label of code v is (v - 1) % 10."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b in range(5):
        codes = np.arange(1, TRAIN_PER_BATCH + 1) + b * TRAIN_PER_BATCH
        _write_batch(folder / f"data_batch_{b + 1}", codes, (codes - 1) % 10)
    codes = np.arange(TEST_CODE0, TEST_CODE0 + TEST_IMAGES)
    _write_batch(folder / "test_batch", codes, (codes - TEST_CODE0) % 10)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return root


def write_corrupted(root: Path, corruptions: tuple[str, ...] = ("gaussian_noise",)) -> Path:
    """A tiny CIFAR-10-C: C_ROWS images per corruption (row r has code r + 1) and labels.npy = C_LABELS."""
    folder = root / "CIFAR-10-C"
    folder.mkdir(parents=True)
    for name in corruptions:
        np.save(folder / f"{name}.npy", _images(np.arange(1, C_ROWS + 1)))
    np.save(folder / "labels.npy", C_LABELS)
    return root


def codes(x: torch.Tensor) -> torch.Tensor:
    """Each image's code, after checking the image is constant per channel with blue = 1 - red."""
    red = x[:, 0, 0, 0]
    assert torch.equal(x[:, 0], red[:, None, None].expand(-1, 32, 32))
    assert torch.equal(x[:, 1], x[:, 0])
    assert torch.allclose(x[:, 2], 1 - x[:, 0], atol=1e-6)
    return torch.round(red * 255).long()


# --- fixtures ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A random-weight WRN-28-10 saved as RobustBench stores it; (model dir, its state dict). Written once."""
    import_robustbench()
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet

    torch.manual_seed(0)
    state = WideResNet(depth=28, widen_factor=10).state_dict()
    model_dir = tmp_path_factory.mktemp("models")
    path = model_dir / "cifar10" / "corruptions" / "Standard.pt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": state}, path)
    return model_dir, state


@pytest.fixture
def trust_tiny_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let torchvision read our tiny CIFAR-10 files: its md5 check only accepts the real ones."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


@pytest.fixture
def data(tmp_path: Path, trust_tiny_clean: None) -> DataPaths:
    """Tiny clean CIFAR-10 and CIFAR-10-C (gaussian_noise only); no model."""
    return DataPaths(cifar10_dir=write_clean(tmp_path / "cifar10"), cifar10c_dir=write_corrupted(tmp_path / "c"))


def all_codes(task) -> list[int]:
    return sorted(torch.cat([codes(task.train.x), codes(task.val.x), codes(task.test.x)]).tolist())


# --- tasks ------------------------------------------------------------------------------------------------------

def test_input_task_reads_severity_one_rows_with_their_labels(data: DataPaths) -> None:
    task = Cifar10Setup(data).task(TaskSpec("input", "gaussian_noise", severity=1, shots=10, seed=0))
    assert task.num_classes == 10
    assert (len(task.train), len(task.val), len(task.test)) == (10, 5, 5)
    assert all_codes(task) == list(range(1, C_ROWS + 1))
    for split in (task.train, task.val, task.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.x.shape[1:] == (3, 32, 32)
        assert 0 <= split.x.min() and split.x.max() <= 1
        assert torch.equal(split.y, torch.from_numpy(C_LABELS[codes(split.x) - 1]).long())
    assert sorted(task.train.y.tolist()) == list(range(10))


def test_source_sample_is_clean_training_images_with_true_labels(data: DataPaths) -> None:
    task = Cifar10Setup(data).task(TaskSpec("output", shots=10))
    source_codes = codes(task.source.x)
    assert task.source.x.dtype == torch.float32 and task.source.y.dtype == torch.int64
    assert sorted(source_codes.tolist()) == list(range(1, 5 * TRAIN_PER_BATCH + 1))  # all 200 (< SOURCE_SIZE)
    assert torch.equal(task.source.y, (source_codes - 1) % 10)


def test_source_sample_is_balanced_and_fixed_by_seed(data: DataPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cifar10_module, "SOURCE_SIZE", 50)
    setup = Cifar10Setup(data)
    first, again, other = (setup.task(TaskSpec("output", shots=10, seed=s)).source for s in (0, 0, 1))
    assert torch.bincount(first.y, minlength=10).tolist() == [5] * 10
    assert torch.equal(first.x, again.x) and torch.equal(first.y, again.y)
    assert set(codes(first.x).tolist()) != set(codes(other.x).tolist())


def test_output_task_flips_labels_to_nine_minus_y(data: DataPaths) -> None:
    task = Cifar10Setup(data).task(TaskSpec("output", shots=10))
    assert (len(task.train), len(task.val), len(task.test)) == (10, 10, 10)
    assert all_codes(task) == list(range(TEST_CODE0, TEST_CODE0 + TEST_IMAGES))
    for split in (task.train, task.val, task.test):
        true_labels = (codes(split.x) - TEST_CODE0) % 10
        assert torch.equal(split.y, 9 - true_labels)


def test_severity_two_reads_rows_10000_to_20000(tmp_path: Path, trust_tiny_clean: None) -> None:
    folder = tmp_path / "c" / "CIFAR-10-C"
    folder.mkdir(parents=True)
    images = np.lib.format.open_memmap(folder / "gaussian_noise.npy", "w+", np.uint8, (10_000 + C_ROWS, 32, 32, 3))
    images[10_000:] = _images(np.arange(1, C_ROWS + 1))  # rows of severity 1 stay black (code 0, blue 0)
    images.flush()
    del images
    np.save(folder / "labels.npy", np.concatenate([C_LABELS, np.arange(10_000) % 10]).astype(np.uint8))
    setup = Cifar10Setup(DataPaths(cifar10_dir=write_clean(tmp_path / "cifar10"), cifar10c_dir=tmp_path / "c"))

    task = setup.task(TaskSpec("input", "gaussian_noise", severity=2, shots=10))
    assert all_codes(task) == list(range(1, C_ROWS + 1))
    assert torch.equal(task.test.y, torch.from_numpy(C_LABELS[codes(task.test.x) - 1]).long())
    with pytest.raises(AutoFTError, match=f"has {10_000 + C_ROWS} rows but severity 3 needs rows 20000"):
        setup.task(TaskSpec("input", "gaussian_noise", severity=3, shots=10))


def test_tiny_file_rejects_severity_above_one(data: DataPaths) -> None:
    path = data.cifar10c_dir / "CIFAR-10-C" / "gaussian_noise.npy"
    with pytest.raises(AutoFTError, match="has 20 rows but severity 5 needs rows 40000") as info:
        Cifar10Setup(data).task(TaskSpec("input", "gaussian_noise", severity=5, shots=10))
    assert str(path) in str(info.value)


def test_splits_are_disjoint_and_fixed_by_seed(data: DataPaths) -> None:
    setup = Cifar10Setup(data)
    spec = TaskSpec("input", "gaussian_noise", severity=1, shots=10, seed=3)
    first, again = setup.task(spec), setup.task(spec)
    other = setup.task(TaskSpec("input", "gaussian_noise", severity=1, shots=10, seed=4))
    parts = [set(codes(s.x).tolist()) for s in (first.train, first.val, first.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(first, name).x, getattr(again, name).x)
        assert torch.equal(getattr(first, name).y, getattr(again, name).y)
    assert parts[0] != set(codes(other.train.x).tolist())
    assert sorted(parts[1]) != sorted(parts[1] | parts[2])[:len(parts[1])]  # val is drawn, not the first rows


def test_too_many_shots_is_a_clear_error(data: DataPaths) -> None:
    with pytest.raises(AutoFTError, match="use fewer shots"):
        Cifar10Setup(data).task(TaskSpec("input", "gaussian_noise", severity=1, shots=200))


def test_check_points_to_breeds_for_feature_shift_and_needs_a_shot_per_class(data: DataPaths) -> None:
    setup = Cifar10Setup(data)
    with pytest.raises(BadArgumentError, match="breeds"):
        setup.check(TaskSpec("feature"))
    with pytest.raises(BadArgumentError, match="breeds"):
        setup.source_model("feature")
    with pytest.raises(BadArgumentError, match="shots"):
        setup.check(TaskSpec("output", shots=9))
    assert setup.check(TaskSpec("output", shots=setup.recipe.shots)).shots == setup.recipe.shots


def test_corrupted_clean_files_fail_with_a_checksum_message(tmp_path: Path) -> None:
    setup = Cifar10Setup(DataPaths(cifar10_dir=write_clean(tmp_path / "cifar10")))  # md5 check left in place
    with pytest.raises(AutoFTError, match="checksum"):
        setup.task(TaskSpec("output", shots=10))


# --- source model -----------------------------------------------------------------------------------------------

def test_source_model_loads_the_checkpoint_weights(checkpoint: tuple[Path, dict[str, torch.Tensor]]) -> None:
    model_dir, state = checkpoint
    model = Cifar10Setup(DataPaths(robustbench_model_dir=model_dir)).source_model("input")
    assert not model.training
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert all(p.device.type == "cpu" for p in model.parameters())
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert [layer.name for layer in partition(model, "block")] == ["stem+block1", "block2", "block3", "head"]


UNPICKLED: list[str] = []  # _mark_unpickled's trace: stays empty unless a checkpoint is fully unpickled


def _mark_unpickled() -> list[str]:
    UNPICKLED.append("ran")
    return UNPICKLED


class _Payload:
    """Runs _mark_unpickled when unpickled by a full (unsafe) unpickler."""

    def __reduce__(self) -> tuple:
        return _mark_unpickled, ()


def test_checkpoint_with_arbitrary_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cifar10" / "corruptions" / "Standard.pt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "payload": _Payload()}, path)
    with pytest.raises(AutoFTError, match="weights-only") as info:
        Cifar10Setup(DataPaths(robustbench_model_dir=tmp_path)).source_model("output")
    assert str(path) in str(info.value)
    assert UNPICKLED == []


def test_forced_unsafe_torch_load_is_refused(checkpoint: tuple[Path, dict[str, torch.Tensor]],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(AutoFTError, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        Cifar10Setup(DataPaths(robustbench_model_dir=checkpoint[0])).source_model("input")


# --- missing files ----------------------------------------------------------------------------------------------

def test_missing_model_names_the_path_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="RobustBench") as info:
        Cifar10Setup(DataPaths(robustbench_model_dir=tmp_path)).source_model("input")
    expected = tmp_path / "cifar10" / "corruptions" / "Standard.pt"
    assert info.value.path == expected and str(expected) in str(info.value)
    assert "load_model" in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("remove, expected, source", [
    ("c/CIFAR-10-C", "c/CIFAR-10-C", "2535967"),
    ("c/CIFAR-10-C/gaussian_noise.npy", "c/CIFAR-10-C/gaussian_noise.npy", "2535967"),
    ("c/CIFAR-10-C/labels.npy", "c/CIFAR-10-C/labels.npy", "2535967"),
    ("cifar10/cifar-10-batches-py", "cifar10/cifar-10-batches-py", "cifar-10-python.tar.gz"),
    ("cifar10/cifar-10-batches-py/data_batch_3", "cifar10/cifar-10-batches-py/data_batch_3",
     "cifar-10-python.tar.gz"),
])
def test_missing_data_names_the_exact_path(data: DataPaths, tmp_path: Path, remove: str, expected: str,
                                           source: str) -> None:
    target = tmp_path / remove
    if target.is_dir():
        for child in target.iterdir():
            child.unlink()
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(MissingFileError) as info:
        Cifar10Setup(data).task(TaskSpec("input", "gaussian_noise", severity=1, shots=10))
    assert info.value.path == tmp_path / expected
    assert str(tmp_path / expected) in str(info.value) and source in str(info.value)
    assert not target.exists()  # nothing downloaded or created in its place


def test_missing_lists_every_absent_file(tmp_path: Path, checkpoint: tuple[Path, dict[str, torch.Tensor]]) -> None:
    paths = DataPaths(cifar10_dir=write_clean(tmp_path / "cifar10"),
                      cifar10c_dir=write_corrupted(tmp_path / "c", CORRUPTIONS),
                      robustbench_model_dir=checkpoint[0])
    assert Cifar10Setup(paths).missing() == []

    removed = [tmp_path / "c/CIFAR-10-C/frost.npy", tmp_path / "c/CIFAR-10-C/labels.npy",
               tmp_path / "cifar10/cifar-10-batches-py/test_batch"]
    for path in removed:
        path.unlink()
    lines = Cifar10Setup(paths).missing()
    assert len(lines) == len(removed)
    for path in removed:
        assert sum(str(path) in line for line in lines) == 1


def test_missing_names_unconfigured_settings(tmp_path: Path) -> None:
    lines = Cifar10Setup(DataPaths(robustbench_model_dir=tmp_path)).missing()
    text = "\n".join(lines)
    assert len(lines) == 3
    assert str(tmp_path / "cifar10" / "corruptions" / "Standard.pt") in text
    assert "AUTOFT_CIFAR10_DIR" in text and "AUTOFT_CIFAR10C_DIR" in text
