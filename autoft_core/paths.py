"""Where things live: the cache folder and the local paths of the real (non-downloadable) data sets.

Every path can come from an environment variable, a CLI flag or a dashboard setting; see DataPaths.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

from .errors import AutoFTError

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """The cache folder (pretrained defaults, result store); AUTOFT_CACHE overrides `<repo>/cache`."""
    path = Path(os.environ.get("AUTOFT_CACHE", REPO_ROOT / "cache"))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = "it is a file" if path.is_file() else exc.strerror or str(exc)
        raise AutoFTError(f"cannot use {path} as the cache folder ({why}); set AUTOFT_CACHE to a writable "
                          "folder") from exc
    return path


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` then rename over `path`: readers see the old file or the whole new one, never half."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


@dataclass(frozen=True)
class DataPaths:
    """Local paths of the real setups' files. None means "not configured"."""

    cifar10_dir: Path | None = None  # torchvision CIFAR10 root (holds cifar-10-batches-py/)
    cifar10c_dir: Path | None = None  # folder holding CIFAR-10-C/<corruption>.npy and labels.npy
    robustbench_model_dir: Path | None = None  # holds cifar10/corruptions/Standard.pt
    imagenet_dir: Path | None = None  # ImageNet root with train/ and val/ class folders
    breeds_info_dir: Path | None = None  # BREEDS hierarchy files (dataset_class_info.json, ...)
    moco_checkpoint: Path | None = None  # MoCo-v2 ResNet-50 checkpoint (moco_v2_800ep_pretrain.pth.tar)

    ENV = {
        "cifar10_dir": "AUTOFT_CIFAR10_DIR",
        "cifar10c_dir": "AUTOFT_CIFAR10C_DIR",
        "robustbench_model_dir": "AUTOFT_ROBUSTBENCH_MODEL_DIR",
        "imagenet_dir": "AUTOFT_IMAGENET_DIR",
        "breeds_info_dir": "AUTOFT_BREEDS_INFO_DIR",
        "moco_checkpoint": "AUTOFT_MOCO_CHECKPOINT",
    }

    @classmethod
    def from_env(cls) -> "DataPaths":
        """Paths from the AUTOFT_* environment variables."""
        values = {name: os.environ.get(var) for name, var in cls.ENV.items()}
        return cls(**{k: Path(v) for k, v in values.items() if v})

    def with_overrides(self, **overrides: str | Path | None) -> "DataPaths":
        """A copy with the given non-empty paths replacing these (CLI flags, dashboard settings)."""
        valid = {f.name for f in fields(self)}
        given = {k: Path(v) for k, v in overrides.items() if v and k in valid}
        return replace(self, **given)
