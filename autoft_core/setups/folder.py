"""The `folder` setup: your own pretrained model on your own images.

    python -m autoft_core finetune --setup folder --source-dir SRC --target-dir TGT \
        --arch resnet50 --checkpoint model.pt --image-size 224 --shift feature --method auto-rgn

- source: the images the model was trained on (SRC, an ImageFolder: SRC/<class>/<image>), up to
  SOURCE_SIZE of them, balanced over classes (what the methods compare the target with);
- target: TGT with the same class sub-folders, split once per class (a fixed seed) into train (the
  run's seed draws the shots from it), VAL_SHARE validation and TEST_SHARE test; or TGT/train,
  TGT/val and TGT/test as given;
- feature: the target as it is (your subpopulation shift: source and target folders of different
  subpopulations of the same classes); output: the target with labels flipped y -> K - 1 - y;
  input: the target with one of the 14 corruptions, CIFAR-10-C's constants below 64 px and
  ImageNet-C's from 64 px up (data.corruptions);
- model: `--arch` (models.torchvision_archs) with `--checkpoint` (a state dict, models.checkpoints),
  normalising its [0, 1] input with `--mean` and `--std` (ImageNet's by default). A checkpoint head
  with another class count is replaced by a new one fitted on the source images (head only, cached),
  and a note says so.

The options travel in the setup's name (`folder?source_dir=...&target_dir=...&arch=...`, built by
`folder_setup`), so runs on different folders or models are stored apart, and a fingerprint of the
files' names, sizes and times (`data=`) keeps runs on changed files apart too. `OPTIONS` declares the
options once: the CLI flags and the dashboard's fields are made from it.
"""
from __future__ import annotations

import math

import logging
import os
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from ..core.recipe import Recipe, TaskSpec
from ..core.values import Bounds, cli_flag
from ..data.image_folder import SPLITS, FolderIndex, fingerprint, has_splits, scan
from ..errors import AutoFTError, BadArgumentError, BadNumberError
from ..models.checkpoints import require_checkpoint
from ..models.torchvision_archs import ARCH_NAMES, ARCHS
from ..paths import DataPaths
from .base import Setup

if TYPE_CHECKING:
    from torch import nn

    from ..core.data import Split, TaskData

NAME = "folder"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SOURCE_SIZE = 512  # source images kept (balanced over classes, fixed seed)
VAL_SHARE, TEST_SHARE = 0.2, 0.4  # of each target class when the target has no train/val/test folders
HEAD_RECIPE = Recipe(epochs=10, lr=1e-3, batch_size=32)  # fitting a replaced head on the source images
# (smallest image size, multiple of) per architecture, measured by forward passes (the ResNets and EfficientNet
# take any size): ConvNeXt's 4-pixel stem and three halvings need 32 pixels, a ViT whole patches (models.vit)
IMAGE_SIZES = {"convnext_tiny": (32, 1), "vit_b_16": (16, 16), "vit_tiny": (16, 16), "vit_mini": (4, 4)}
IMAGE_SIZE_BOUNDS = Bounds(int, 8, 1024)  # pixels, before the architecture's own limits
LOG = logging.getLogger("autoft_core")


@dataclass(frozen=True)
class Option:
    """One folder-setup option: its CLI flag, help, default and kind (path, choice, int or floats)."""

    name: str
    help: str
    default: Any = None
    kind: str = "path"
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        """The option's CLI flag (`--source-dir` for source_dir)."""
        return cli_flag(self.name)


OPTIONS = (
    Option("source_dir", "source images, the ones the model was trained on: an ImageFolder (DIR/<class>/<image>)"),
    Option("target_dir", "target images with the same class folders, or train/ val/ test/ folders of them"),
    Option("checkpoint", "the source model's weights: a state dict file (torch.save, read weights-only) or "
                         ".safetensors"),
    Option("arch", "its architecture", "resnet18", "choice", ARCH_NAMES),
    Option("image_size", "images are resized (shorter side) and centre-cropped to this many pixels", 224, "int"),
    Option("mean", "per-channel mean the model normalises its [0, 1] input with (R,G,B)",
           ",".join(map(str, IMAGENET_MEAN)), "floats"),
    Option("std", "per-channel standard deviation it divides by (R,G,B)", ",".join(map(str, IMAGENET_STD)), "floats"),
)


def _floats(name: str, text: str | tuple[float, ...]) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in (text.split(",") if isinstance(text, str) else text))
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) for v in values) or (name == "std" and min(values) <= 0):
        raise BadArgumentError(name, text, "three comma-separated finite numbers (R,G,B)"
                               + (", > 0" if name == "std" else ""))
    return values  # type: ignore[return-value]


def _image_size(value: object, arch: str) -> int:
    """The image size in pixels (a whole number, or its digits): within IMAGE_SIZE_BOUNDS and one `arch` takes."""
    size = IMAGE_SIZE_BOUNDS.parse("image size", value)
    smallest, multiple = IMAGE_SIZES.get(arch, (1, 1))
    if size % multiple:
        raise BadNumberError("--image-size", size, f"a multiple of {multiple}, the patch size of --arch {arch}; "
                             f"try {max(smallest, round(size / multiple) * multiple)}")
    if size < smallest:
        raise BadNumberError("--image-size", size, f"at least {smallest}, the smallest image --arch {arch} takes")
    return size


def _canonical(path: Path) -> Path:
    """`path` with `~`, `..` and symlinks resolved: one spelling per folder or file in the setup name (store key)."""
    path = path.expanduser()  # a symlinked file keeps its name, whose suffix picks the checkpoint reader
    return path.parent.resolve() / path.name if path.is_symlink() and path.is_file() else path.resolve()


@dataclass(frozen=True)
class FolderOptions:
    """A folder setup's options, checked; `name()` is the setup name that carries them."""

    source_dir: Path
    target_dir: Path
    checkpoint: Path
    arch: str = "resnet18"
    image_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    data: str | None = None  # fingerprint of the files when the name was made

    def __post_init__(self) -> None:
        if not isinstance(self.arch, str) or self.arch not in ARCHS:
            raise BadArgumentError("arch", self.arch, ARCH_NAMES)
        for name in ("source_dir", "target_dir", "checkpoint"):
            value = getattr(self, name)
            if not isinstance(value, (str, os.PathLike)) or value == "":
                raise BadArgumentError(name, value, "a path (str or pathlib.Path)")
            object.__setattr__(self, name, _canonical(Path(value)))
        object.__setattr__(self, "image_size", _image_size(self.image_size, self.arch))
        object.__setattr__(self, "mean", _floats("mean", self.mean))
        object.__setattr__(self, "std", _floats("std", self.std))

    @classmethod
    def from_query(cls, query: str) -> "FolderOptions":
        """The options of a setup name's query part (`source_dir=...&target_dir=...`)."""
        given = dict(parse_qsl(query, keep_blank_values=True))
        names = [f.name for f in fields(cls)]
        unknown = [k for k in given if k not in names]
        if unknown:
            raise BadArgumentError("folder option", unknown[0], names)
        require_options(given)
        return cls(**given)

    def name(self) -> str:
        """`folder?...`: every option that is not its default, and the fingerprint."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        defaults = {f.name: f.default for f in fields(self)}
        shown = {k: ",".join(map(str, v)) if isinstance(v, tuple) else str(v) for k, v in values.items()
                 if v is not None and v != defaults[k]}
        return f"{NAME}?{urlencode(shown, safe='/:,')}"

    def fingerprint(self) -> str:
        """A digest of the folders' and checkpoint's contents: a changed file changes the setup's name."""
        return fingerprint(self.source_dir, self.target_dir, self.checkpoint)


def require_options(given: dict[str, Any]) -> None:
    """A clear error naming the required options (folders, checkpoint) that `given` lacks."""
    absent = [o.flag for o in OPTIONS if o.default is None and not given.get(o.name)]
    if absent:
        raise AutoFTError(f"setup {NAME} needs {', '.join(absent)}: your source and target image folders and "
                          "your model's checkpoint")


def folder_setup(source_dir: str | Path, target_dir: str | Path, checkpoint: str | Path, arch: str = "resnet18",
                 image_size: int | str = 224, mean: str | tuple[float, ...] = IMAGENET_MEAN,
                 std: str | tuple[float, ...] = IMAGENET_STD) -> str:
    """The setup name of your own model and folders (what `--setup folder --source-dir ...` stands
    for), with the files' current fingerprint."""
    options = FolderOptions(source_dir, target_dir, checkpoint, arch, image_size, mean, std)  # type: ignore[arg-type]
    return replace(options, data=options.fingerprint()).name()


class FolderSetup(Setup):
    """Your own model and images; the options come with the name (see the module doc)."""

    name = NAME
    description = ("Your own: a pretrained model (--arch, --checkpoint) on your source and target image folders "
                   "(--source-dir, --target-dir); all three shifts")
    recipe = Recipe(shots=1000, epochs=15, lr=1e-4, batch_size=32)

    def __init__(self, paths: DataPaths | None = None, options: FolderOptions | None = None) -> None:
        super().__init__(paths)
        self.options = options

    @classmethod
    def with_options(cls, paths: DataPaths | None, query: str) -> "FolderSetup":
        """The setup a name's `?option=...` query describes (`get_setup` calls it for `folder?...`)."""
        return cls(paths, FolderOptions.from_query(query))

    def missing(self) -> list[str]:
        try:
            _indices(self._options())
            require_checkpoint(self._options().checkpoint)
        except AutoFTError as exc:
            return [str(exc)]
        return []

    def check(self, spec: TaskSpec) -> TaskSpec:
        """The base checks, and the folders' layout (the files are listed, not read)."""
        spec = super().check(spec)
        _indices(self._options())
        return spec

    def task(self, spec: TaskSpec) -> "TaskData":
        """Source sample and target splits (see the module doc); only the images used are decoded."""
        import torch

        from ..core.data import Split, TaskData, balanced_indices, flipped_labels
        from ..data.corruptions import constants_for, corrupt

        spec = self.check(spec)
        options = self._verified()
        source, (train, val, test) = _indices(options)
        k = len(source.classes)
        per_class = max(1, spec.shots // k)
        shots = balanced_indices(torch.tensor(train.labels), per_class, torch.Generator().manual_seed(spec.seed))
        splits = [_load(options, train, shots.tolist()), _load(options, val), _load(options, test)]
        if spec.shift == "input":  # one batch, so the three splits draw different noise
            x = corrupt(torch.cat([s.x for s in splits]), spec.corruption, spec.severity, spec.seed,
                        constants_for(options.image_size))
            splits = [Split(part, s.y) for part, s in zip(x.split([len(s) for s in splits]), splits)]
        elif spec.shift == "output":
            splits = [Split(s.x, flipped_labels(s.y, k)) for s in splits]
        return TaskData(_source_split(options), *splits, num_classes=k)

    def _source_model(self, shift: str) -> "nn.Module":
        """The architecture with the checkpoint's weights (a replaced head fitted on the source images),
        normalising its input; eval mode, CPU."""
        return _source_model(self._verified()).eval()

    def notes(self) -> list[str]:
        """What the setup changes about your model (a replaced head); reads the checkpoint."""
        options = self._options()
        return [_head_note(options)] if _replaced_head(options) is not None else []

    def _options(self) -> FolderOptions:
        if self.options is None:
            require_options({})
        return self.options  # type: ignore[return-value]

    def _verified(self) -> FolderOptions:
        """The options, once the files are checked to be those the name was made from."""
        options = self._options()
        if options.data is not None and options.data != options.fingerprint():
            raise AutoFTError(f"the files under {options.source_dir}, {options.target_dir} or {options.checkpoint} "
                              "changed since this run was named; run the command again (the name is made from the "
                              "files as they are now)")
        return options


Indices = tuple[FolderIndex, tuple[FolderIndex, FolderIndex, FolderIndex]]


@lru_cache(maxsize=8)
def _indices(options: FolderOptions) -> Indices:
    """The source folder's index and the target's train/val/test indices (listed, not read; kept per
    options, whose fingerprint changes with the files)."""
    source_dir, target_dir = options.source_dir, options.target_dir
    source = scan(source_dir, "source folder")
    if len(source.classes) < 2:
        raise AutoFTError(f"source folder {source_dir} has one class sub-folder ({source.classes[0]}/), so every "
                          "prediction would be right; give at least 2 classes")
    if has_splits(target_dir):
        splits = tuple(scan(target_dir / s, f"target {s} folder") for s in SPLITS)
    else:
        target = scan(target_dir, "target folder")
        if set(target.classes) < set(SPLITS):
            raise AutoFTError(f"target folder {target_dir} has {'/ and '.join(target.classes)}/ but no "
                              f"{'/ or '.join(s for s in SPLITS if s not in target.classes)}/; give all of train/, "
                              "val/ and test/, or class sub-folders only")
        splits = _split_target(target)
    for index in splits:
        if index.classes != source.classes:
            raise AutoFTError(f"{index.root} has classes {list(index.classes)} but the source folder "
                              f"{source_dir} has {list(source.classes)}; give both the same class sub-folders")
    return source, splits  # type: ignore[return-value]


def _split_target(index: FolderIndex) -> tuple[FolderIndex, FolderIndex, FolderIndex]:
    """Per class, a fixed shuffle (seed 0) cut into train, VAL_SHARE val and TEST_SHARE test (at least
    one image each): the target's splits stay fixed across seeds, the shots drawn from train move."""
    import torch

    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    generator = torch.Generator().manual_seed(0)
    for label, name in enumerate(index.classes):
        rows = [i for i, y in enumerate(index.labels) if y == label]
        if len(rows) < 3:
            raise AutoFTError(f"target folder {index.root}: class {name}/ has {len(rows)} image(s); splitting it "
                              "into train, val and test needs at least 3 (or give train/ val/ test/ folders)")
        rows = [rows[i] for i in torch.randperm(len(rows), generator=generator).tolist()]
        n_val = max(1, round(VAL_SHARE * len(rows)))
        n_test = min(max(1, round(TEST_SHARE * len(rows))), len(rows) - n_val - 1)
        for part, chosen in zip(parts, (rows[n_val + n_test:], rows[:n_val], rows[n_val:n_val + n_test])):
            part.extend(chosen)
    return tuple(FolderIndex(index.root, index.classes, tuple(index.files[i] for i in part),
                             tuple(index.labels[i] for i in part)) for part in parts)  # type: ignore[return-value]


def _load(options: FolderOptions, index: FolderIndex, rows: list[int] | None = None) -> "Split":
    """The images of `rows` (default all) of a folder index, with their labels."""
    import torch

    from ..core.data import Split

    rows = list(range(len(index.files))) if rows is None else rows
    return Split(_images(tuple(index.files[i] for i in rows), options.image_size, options.data),
                 torch.tensor([index.labels[i] for i in rows], dtype=torch.long))


@lru_cache(maxsize=32)
def _images(files: tuple[Path, ...], size: int, fingerprint: str | None) -> Any:
    """Decoded images, kept per file list, size and fingerprint of the files."""
    from ..data.image_folder import load_images

    return load_images(files, size)


def _source_split(options: FolderOptions) -> "Split":
    """Up to SOURCE_SIZE source images, balanced over classes (fixed seed)."""
    import torch

    from ..core.data import balanced_indices

    source = _indices(options)[0]
    per_class = max(1, SOURCE_SIZE // len(source.classes))
    rows = balanced_indices(torch.tensor(source.labels), per_class, torch.Generator().manual_seed(0))
    return _load(options, source, rows.tolist())


def _built(options: FolderOptions) -> tuple["nn.Module", int | None]:
    """The architecture (seeded initialisation) with the checkpoint loaded, normalising its input, and
    the checkpoint's class count when its head was left out (-1: unknown)."""
    import torch

    from ..models.checkpoints import load_into, read_state_dict
    from ..models.normalize import normalized
    from ..models.torchvision_archs import build

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build(options.arch, len(_indices(options)[0].classes), options.image_size)
    replaced = load_into(model, read_state_dict(options.checkpoint), ARCHS[options.arch].head,
                         options.checkpoint, options.arch)
    return normalized(model, options.mean, options.std), replaced


@lru_cache(maxsize=8)
def _replaced_head(options: FolderOptions) -> int | None:
    return _built(options)[1]


def _head_note(options: FolderOptions) -> str:
    count, classes = _replaced_head(options), len(_indices(options)[0].classes)
    return (f"note: the head of {options.checkpoint} has {count if count >= 0 else 'another number of'} classes "
            f"and the folders {classes}: it was replaced by a new {classes}-class head fitted on the source "
            f"images ({HEAD_RECIPE.epochs} epochs, head only)")


@lru_cache(maxsize=4)
def _source_state(options: FolderOptions) -> dict:
    """The source model's weights: the checkpoint's, or with a new head fitted on the source (cached)."""
    from .source_training import trained_source_model

    model, replaced = _built(options)
    if replaced is not None:
        LOG.warning(_head_note(options))
        identity = {"arch": options.arch, "size": options.image_size, "mean": options.mean, "std": options.std,
                    "checkpoint": fingerprint(options.checkpoint)}
        model = trained_source_model(f"folder-{options.arch}", identity, lambda: model, _source_split(options),
                                     len(_indices(options)[0].classes), (HEAD_RECIPE,), only=ARCHS[options.arch].head)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _source_model(options: FolderOptions) -> "nn.Module":
    """A fresh copy of the source model."""
    from ..models.normalize import normalized
    from ..models.torchvision_archs import build

    model = build(options.arch, len(_indices(options)[0].classes), options.image_size)
    model = normalized(model, options.mean, options.std)
    model.load_state_dict(_source_state(options))
    return model
