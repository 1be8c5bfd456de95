"""The real CIFAR-10 setup of Lee et al. (2023): RobustBench's Standard WideResNet-28-10 under two shifts.

- input: CIFAR-10-C (Hendrycks & Dietterich, 2019), one of 14 corruptions at severity 1-5;
- output: CIFAR-10F, the clean CIFAR-10 test set with labels flipped y -> 9 - y.
No feature-level shift: CIFAR-10 has no subpopulation split for this model (the breeds-* setups have one).
Nothing is downloaded: every file is read from the local paths in DataPaths, checked before any loader
runs (RobustBench and torchvision would otherwise try to download and create folders).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.datasets import CIFAR10

from ..compat import import_robustbench
from ..core.data import Split, TaskData, balanced_indices, flipped_labels
from ..models.checkpoints import CHECKPOINT_ERRORS, checkpoint_problem
from ..errors import AutoFTError, BadArgumentError, MissingFileError
from ..paths import DataPaths
from ..core.recipe import Recipe, TaskSpec
from .base import Setup

NUM_CLASSES = 10
SEVERITY_ROWS = 10_000  # CIFAR-10-C stacks severities 1..5, 10,000 test images each
SOURCE_SIZE = 1_000  # clean training images kept as the source sample, balanced over classes
VAL_SIZE = 1_000  # target validation images (half the non-train images when fewer than 2,000 remain)

CLEAN_FOLDER = "cifar-10-batches-py"
CLEAN_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
CORRUPTED_FOLDER = "CIFAR-10-C"
MODEL_FILE = Path("cifar10", "corruptions", "Standard.pt")
VALID_SHIFTS = "input, output (for a feature-level shift use a breeds-* setup)"

GET_MODEL = ("It is RobustBench's CIFAR-10 'Standard' WideResNet-28-10 (model zoo, threat model 'corruptions'): "
             "on a machine with internet run robustbench.utils.load_model(model_name='Standard', "
             "model_dir='models', dataset='cifar10', threat_model='corruptions') and copy "
             "models/cifar10/corruptions/Standard.pt to the same place under AUTOFT_ROBUSTBENCH_MODEL_DIR.")
GET_CORRUPTED = ("CIFAR-10-C (Hendrycks & Dietterich, 2019) is on Zenodo, record 2535967 "
                 "(https://zenodo.org/record/2535967): extract CIFAR-10-C.tar in the folder set as "
                 "AUTOFT_CIFAR10C_DIR, giving CIFAR-10-C/<corruption>.npy and CIFAR-10-C/labels.npy.")
GET_CLEAN = ("Download the CIFAR-10 python version (cifar-10-python.tar.gz from "
             "https://www.cs.toronto.edu/~kriz/cifar.html) and extract it in the folder set as AUTOFT_CIFAR10_DIR, "
             "giving cifar-10-batches-py/.")


@dataclass(frozen=True)
class _Need:
    """One required file or folder; `path` is None when its DataPaths setting is not configured."""

    what: str
    path: Path | None
    setting: str
    where_to_get: str
    folder: bool = False  # a folder is needed here, else a regular file

    def problem(self) -> AutoFTError | None:
        """The error to show when the file (or folder) is absent or of the other kind, None when it is there."""
        if self.path is None:
            return AutoFTError(f"{self.what}: no folder configured; set {DataPaths.ENV[self.setting]} "
                               f"(or the {self.setting} path in the CLI / dashboard). {self.where_to_get}")
        if not self.path.exists():
            return MissingFileError(self.what, self.path, self.where_to_get)
        if self.path.is_dir() != self.folder:  # e.g. a folder where Standard.pt belongs: RobustBench would download
            found, wanted = ("a folder", "a file") if self.path.is_dir() else ("not a folder", "a folder")
            return AutoFTError(f"{self.what} {self.path} is {found}; it should be {wanted}. {self.where_to_get}")
        return None


def _under(root: Path | None, relative: Path | str) -> Path | None:
    """`root / relative`, or None when the root is not configured."""
    return None if root is None else Path(root) / relative


def _require(needs: list[_Need]) -> None:
    """Raise the first problem among `needs`."""
    for need in needs:
        error = need.problem()
        if error is not None:
            raise error


class Cifar10Setup(Setup):
    """CIFAR-10 -> CIFAR-10-C / CIFAR-10F with RobustBench's Standard WideResNet-28-10 (Lee et al., 2023)."""

    name = "cifar10"
    description = ("Real: CIFAR-10 -> CIFAR-10-C (input-level) and CIFAR-10F, labels y -> 9 - y (output-level); "
                   "RobustBench Standard WideResNet-28-10. No feature-level shift: use a breeds-* setup for that")
    shifts = ("input", "output")
    shifts_help = VALID_SHIFTS
    # The seed paper's Sec. 5 for CIFAR-10-C and CIFAR-10F: 1,000 target images, 25 epochs, lr 1e-5 x alpha_l,
    # weight decay 1e-4. Adam and batch 64, which it leaves unsaid, are from Lee et al.'s code
    # (github.com/anniesch/surgical-finetuning), whose setup it reuses.
    recipe = Recipe(shots=1000, epochs=25, lr=1e-5, batch_size=64, weight_decay=1e-4)

    def check(self, spec: TaskSpec) -> TaskSpec:
        """The base checks, plus at least one shot per class."""
        spec = super().check(spec)
        if spec.shots < NUM_CLASSES:
            raise BadArgumentError("shots", spec.shots, f"at least {NUM_CLASSES} (one image per class)")
        return spec

    def missing(self) -> list[str]:
        needs = self._model_needs() + self._clean_needs() + self._corrupted_needs(self.corruptions())
        return [str(error) for error in (need.problem() for need in needs) if error is not None]

    def task(self, spec: TaskSpec) -> TaskData:
        """Source: SOURCE_SIZE clean training images; target: train = shots balanced, val, test = the rest."""
        spec = self.check(spec)
        if spec.shift == "input":
            _require(self._clean_needs() + self._corrupted_needs((spec.corruption,)))
            target = self._corrupted(spec.corruption, spec.severity)
        else:
            _require(self._clean_needs())
            clean_test = self._clean(train=False)
            target = Split(clean_test.x, flipped_labels(clean_test.y, NUM_CLASSES))
        train, val, test = _target_splits(target, spec.shots, spec.seed)
        return TaskData(self._source_sample(spec.seed), train, val, test, NUM_CLASSES)

    def _source_model(self, shift: str) -> nn.Module:
        """RobustBench's Standard WRN-28-10 (same for both shifts); takes [0, 1] images, eval mode, CPU."""
        _require(self._model_needs())
        _check_safe_torch_load()
        import_robustbench()
        from robustbench.utils import load_model

        path = self.paths.robustbench_model_dir / MODEL_FILE
        try:
            model = load_model(model_name="Standard", model_dir=self.paths.robustbench_model_dir,
                               dataset="cifar10", threat_model="corruptions")
        except CHECKPOINT_ERRORS as exc:
            raise AutoFTError(f"{path} is not a usable RobustBench checkpoint: {checkpoint_problem(exc)}; it should "
                              f"be the original file, a dict holding the WRN-28-10 state_dict. {GET_MODEL}") from None
        return model.eval().cpu()

    # --- required files -------------------------------------------------------------------------------------

    def _model_needs(self) -> list[_Need]:
        path = _under(self.paths.robustbench_model_dir, MODEL_FILE)
        return [_Need("RobustBench CIFAR-10 Standard checkpoint", path, "robustbench_model_dir", GET_MODEL)]

    def _clean_needs(self) -> list[_Need]:
        """The whole cifar-10-batches-py folder (torchvision checks every file, even for the test set)."""
        folder = _under(self.paths.cifar10_dir, CLEAN_FOLDER)
        needs = [_Need("clean CIFAR-10 folder", folder, "cifar10_dir", GET_CLEAN, folder=True)]
        if folder is None or not folder.is_dir():
            return needs
        return [_Need(f"clean CIFAR-10 file {name}", folder / name, "cifar10_dir", GET_CLEAN) for name in CLEAN_FILES]

    def _corrupted_needs(self, corruptions: tuple[str, ...]) -> list[_Need]:
        """The CIFAR-10-C folder, its labels.npy and one <corruption>.npy per corruption."""
        folder = _under(self.paths.cifar10c_dir, CORRUPTED_FOLDER)
        needs = [_Need("CIFAR-10-C folder", folder, "cifar10c_dir", GET_CORRUPTED, folder=True)]
        if folder is None or not folder.is_dir():
            return needs
        files = ("labels", *corruptions)
        return [_Need(f"CIFAR-10-C file {name}.npy", folder / f"{name}.npy", "cifar10c_dir", GET_CORRUPTED)
                for name in files]

    # --- loaders ----------------------------------------------------------------------------------------------

    def _corrupted(self, corruption: str, severity: int) -> Split:
        """All images of one corruption and severity, through RobustBench's loader."""
        folder = self.paths.cifar10c_dir / CORRUPTED_FOLDER
        count = _severity_count(folder / f"{corruption}.npy", severity)
        _check_labels(folder / "labels.npy", count)
        import_robustbench()
        from robustbench.data import load_cifar10c

        x, y = load_cifar10c(count, severity, data_dir=str(self.paths.cifar10c_dir), shuffle=False,
                             corruptions=[corruption])
        return Split(x.float().contiguous(), y.long())

    def _clean_arrays(self, train: bool) -> tuple[np.ndarray, torch.Tensor]:
        """The clean training or test set as (N, 32, 32, 3) uint8 images and int64 labels, via torchvision."""
        try:
            dataset = CIFAR10(root=str(self.paths.cifar10_dir), train=train, download=False)
        except RuntimeError as exc:  # torchvision's md5 check failed
            raise AutoFTError(f"the CIFAR-10 files in {self.paths.cifar10_dir / CLEAN_FOLDER} failed torchvision's "
                              f"checksum check (not the original python-version files). {GET_CLEAN}") from exc
        return dataset.data, torch.tensor(dataset.targets, dtype=torch.int64)

    def _clean(self, train: bool) -> Split:
        images, labels = self._clean_arrays(train)
        return Split(_to_float(images), labels)

    def _source_sample(self, seed: int) -> Split:
        """SOURCE_SIZE clean training images with their true labels, balanced over classes, fixed by seed."""
        images, labels = self._clean_arrays(train=True)
        generator = torch.Generator().manual_seed(seed)
        index = balanced_indices(labels, SOURCE_SIZE // NUM_CLASSES, generator)
        return Split(_to_float(images[index.numpy()]), labels[index])


def _to_float(images: np.ndarray) -> torch.Tensor:
    """(N, 32, 32, 3) uint8 -> (N, 3, 32, 32) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float().div_(255)


def _plain_array(path: Path, holds: str, mmap_mode: str | None = None) -> np.ndarray:
    """The NumPy array in `path` (pickled objects are refused, never loaded), or one error saying what the
    file should hold (`holds`) and where to get it."""
    try:
        return np.load(path, mmap_mode=mmap_mode)
    except (ValueError, OSError, EOFError) as exc:
        raise AutoFTError(f"{path} is not a plain NumPy array file ({type(exc).__name__}: damaged, or pickled "
                          f"objects, which are never loaded); {holds}. {GET_CORRUPTED}") from None


def _severity_count(path: Path, severity: int) -> int:
    """How many images the file holds for this severity (rows (s-1)*10,000 .. s*10,000, those that exist)."""
    images = _plain_array(path, "CIFAR-10-C files hold uint8 images of shape (N, 32, 32, 3)",
                          mmap_mode="r")  # reads the header only
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3) or images.dtype != np.uint8:
        raise AutoFTError(f"{path} holds a {images.dtype} array of shape {images.shape}; CIFAR-10-C files hold "
                          f"uint8 images of shape (N, 32, 32, 3). {GET_CORRUPTED}")
    start = (severity - 1) * SEVERITY_ROWS
    if images.shape[0] <= start:
        raise AutoFTError(f"{path} has {images.shape[0]} rows but severity {severity} needs rows {start} to "
                          f"{start + SEVERITY_ROWS} (a full CIFAR-10-C file has {5 * SEVERITY_ROWS}). {GET_CORRUPTED}")
    return min(images.shape[0] - start, SEVERITY_ROWS)


def _check_labels(path: Path, count: int) -> None:
    """RobustBench takes the first `count` labels (the 50,000 in labels.npy repeat per severity)."""
    labels = _plain_array(path, f"labels.npy holds whole-number class labels 0..{NUM_CLASSES - 1}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise AutoFTError(f"{path} holds {labels.dtype} values; labels.npy holds whole-number class labels "
                          f"0..{NUM_CLASSES - 1}. {GET_CORRUPTED}")
    if labels.ndim != 1 or len(labels) < count:
        raise AutoFTError(f"{path} holds {labels.shape} labels but {count} are needed. {GET_CORRUPTED}")
    if labels[:count].min() < 0 or labels[:count].max() >= NUM_CLASSES:
        raise AutoFTError(f"{path} holds labels outside 0..{NUM_CLASSES - 1}. {GET_CORRUPTED}")


def _check_safe_torch_load() -> None:
    """RobustBench calls torch.load without weights_only: only run it where torch's default is the safe loader."""
    forced_unsafe = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "0").lower() in {"1", "y", "yes", "true"}
    if torch.__version__ < (2, 6) or forced_unsafe:
        raise AutoFTError("refusing to load the RobustBench checkpoint: torch.load would unpickle arbitrary objects "
                          "(needs torch >= 2.6 and TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD unset)")


def _target_splits(target: Split, shots: int, seed: int) -> tuple[Split, Split, Split]:
    """train = shots // 10 images per class, val = VAL_SIZE others, test = the rest; fixed by seed."""
    generator = torch.Generator().manual_seed(seed)
    train = balanced_indices(target.y, shots // NUM_CLASSES, generator)
    in_train = torch.zeros(len(target), dtype=torch.bool)
    in_train[train] = True
    rest = torch.nonzero(~in_train).flatten()
    rest = rest[torch.randperm(len(rest), generator=generator)]
    n_val = min(VAL_SIZE, len(rest) // 2)
    if n_val == 0:
        raise AutoFTError(f"shots={shots} leave {len(rest)} of the {len(target)} target images for validation "
                          "and test; use fewer shots")
    return target.subset(train), target.subset(rest[:n_val]), target.subset(rest[n_val:])
