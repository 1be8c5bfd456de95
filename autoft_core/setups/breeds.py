"""BREEDS Living-17 and Entity-30 on a local ImageNet, with a MoCo-v2 ResNet-50 source model.

The superclasses and their source/target subclass halves come from `data.breeds_hierarchy` (the
published BREEDS construction); images are read only from the class folders those name. The source
model is MoCo-v2 (800 epochs) with a new head, trained on the source subclasses by LP-FT and cached.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from torchvision.models.resnet import ResNet

from ..data.breeds_hierarchy import ENTITY30, LIVING17, BreedsSpec, Superclasses, make_superclasses, missing_files
from ..core.data import Split, TaskData, balanced_indices, flipped_labels
from ..models.checkpoints import CHECKPOINT_ERRORS, checkpoint_problem
from ..errors import AutoFTError, MissingFileError
from ..finetune import finetune
from ..layers import partition
from ..models.normalized_resnet import NormalizedResNet
from ..models.weights_cache import cached_model
from ..paths import DataPaths
from ..core.recipe import Recipe, TaskSpec
from .base import Setup

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png"})
SHOTS_PER_CLASS = 50  # the default target training set: 50 images per superclass (850 and 1,500 in all)
MOCO_PREFIX = "module.encoder_q."  # facebookresearch/moco main_lincls.py keeps these keys, minus fc
IMAGENET_WHERE = ("BREEDS needs a local ImageNet (ILSVRC-2012, from image-net.org) laid out as "
                  "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (val sorted into class folders); "
                  "point AUTOFT_IMAGENET_DIR at its root.")
MOCO_WHERE = ("Download moco_v2_800ep_pretrain.pth.tar, the MoCo v2 800-epoch ResNet-50 listed in the "
              "facebookresearch/moco README (https://dl.fbaipublicfiles.com/moco/moco_checkpoints/moco_v2_800ep/"
              "moco_v2_800ep_pretrain.pth.tar), and point AUTOFT_MOCO_CHECKPOINT at it.")


@dataclass(frozen=True)
class SourceTraining:
    """LP-FT on the source subclasses through `finetune()`: LP trains the head only (SGD, momentum 0.9,
    BatchNorm frozen), then FT all layers (Adam, BatchNorm statistics updated). The images are decoded once
    into memory at the test view (no random-crop augmentation: `finetune` trains on device tensors), so the
    source set is capped at `per_class` images per superclass (0.6 MB each at 224 px)."""

    lp_epochs: int = 2
    lp_lr: float = 0.1
    ft_epochs: int = 3
    ft_lr: float = 1e-5
    batch_size: int = 64
    per_class: int = 300
    holdout_per_class: int = 10  # held out to report the source model's accuracy while it trains
    seed: int = 0

    def phases(self) -> tuple[Recipe, Recipe]:
        """The LP and FT recipes."""
        return (Recipe(epochs=self.lp_epochs, lr=self.lp_lr, batch_size=self.batch_size, optimizer="sgd",
                       momentum=0.9, granularity="block"),
                Recipe(epochs=self.ft_epochs, lr=self.ft_lr, batch_size=self.batch_size, train_bn_stats=True,
                       granularity="block"))


def load_moco(model: ResNet, checkpoint: Path) -> None:
    """Load MoCo's query encoder (all but its fc) into the model; the model's own fc stays as it is."""
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        backbone = {k[len(MOCO_PREFIX):]: v for k, v in state.items()
                    if k.startswith(MOCO_PREFIX) and not k.startswith(MOCO_PREFIX + "fc.")}
        result = model.load_state_dict(backbone, strict=False)
    except CHECKPOINT_ERRORS as exc:
        raise AutoFTError(f"{checkpoint} is not a usable MoCo-v2 checkpoint: {checkpoint_problem(exc)}; it should be "
                          "moco_v2_800ep_pretrain.pth.tar, a dict whose state_dict holds the ResNet-50 query encoder "
                          f"(module.encoder_q.*). {MOCO_WHERE}") from None
    if result.unexpected_keys or set(result.missing_keys) != {"fc.weight", "fc.bias"}:
        raise AutoFTError(f"{checkpoint} is not a MoCo ResNet-50 checkpoint: missing "
                          f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}. {MOCO_WHERE}")


def eval_transform(image_size: int) -> transforms.Compose:
    """ImageNet's test view scaled to `image_size`: shorter side to size*256/224, centre crop."""
    return transforms.Compose([transforms.Resize(round(image_size * 256 / 224)),
                               transforms.CenterCrop(image_size), transforms.ToTensor()])


class ImageFiles(Dataset):
    """Image files with their labels, decoded and transformed on access."""

    def __init__(self, paths: list[Path], labels: torch.Tensor, transform: transforms.Compose) -> None:
        self.paths, self.labels, self.transform = paths, labels, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            with Image.open(self.paths[i]) as image:
                return self.transform(image.convert("RGB")), self.labels[i]
        except (OSError, ValueError, Image.DecompressionBombError) as exc:  # undecodable, truncated, huge
            raise AutoFTError(f"{self.paths[i]} is not a readable image ({type(exc).__name__}: {exc}); ImageNet "
                              "class folders should hold only JPEG or PNG images: replace or delete it") from None

    def first_unreadable(self) -> AutoFTError | None:
        """The error of the first file that cannot be decoded (to name it when a worker process failed)."""
        for i in range(len(self)):
            try:
                self[i]
            except AutoFTError as exc:
                return exc
        return None


@contextmanager
def naming_bad_images(files: ImageFiles) -> Iterator[None]:
    """DataLoader workers re-raise a file's error wrapped in their traceback: name the file in one line instead."""
    try:
        yield
    except Exception:
        bad = files.first_unreadable()
        if bad is None:
            raise
        raise bad from None


def load_split(files: ImageFiles, image_size: int, workers: int) -> Split:
    """Decode every file into one (N, 3, H, W) float32 tensor, a batch at a time."""
    with naming_bad_images(files):
        batches = list(DataLoader(files, batch_size=128, num_workers=workers))
    if not batches:
        return Split(torch.empty(0, 3, image_size, image_size), torch.empty(0, dtype=torch.long))
    return Split(torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]))


def train_lp_ft(model: ResNet, data: TaskData, training: SourceTraining) -> None:
    """LP (head only) then FT (all layers) on `data.train`, through `finetune` (CUDA when there is one)."""
    layers = partition(model, "block")
    lp, ft = training.phases()
    head_only = [0.0] * (len(layers) - 1) + [1.0]
    finetune(model, layers, head_only, data, lp, training.seed)
    finetune(model, layers, [1.0] * len(layers), data, ft, training.seed)
    model.cpu().eval()


class BreedsSetup(Setup):
    """A BREEDS data set: superclasses of ImageNet classes, with disjoint source and target subclasses.

    Shifts: "feature" (source subclasses -> unseen target subclasses, the BREEDS shift) and "output"
    (the source subclasses with label y -> C-1-y). There is no "input" shift: the CIFAR-10-C
    corruptions are made for 32 px images, not these 224 px ImageNet images.

    Per task (each capped, balanced over superclasses, drawn with `spec.seed`): a source sample of
    about `source_size` images (source subclasses' train/); target val (`val_per_class` per
    superclass, at most half of the smallest superclass) and train (`shots`) from the target
    subclasses' train/ folders, disjoint; target test (`test_per_class`) from their val/ folders.
    Memory at 224 px is 0.6 MB per image (Living-17 defaults: about 3,300 images, 2 GB).
    """

    breeds: BreedsSpec
    shifts = ("feature", "output")
    # The seed paper's Sec. 5 for Living-17 and Entity-30: 50 target images per class (shots set per data
    # set), 10 epochs, lr 1e-5 x alpha_l, no weight decay; Adam and batch 64 as the cifar10 setup.
    recipe = Recipe(epochs=10, lr=1e-5, batch_size=64)

    def __init__(self, paths: DataPaths | None = None, *, image_size: int = 224, source_size: int = 1000,
                 val_per_class: int = 25, test_per_class: int = 50, breeds: BreedsSpec | None = None,
                 training: SourceTraining = SourceTraining(), workers: int | None = None) -> None:
        super().__init__(paths)
        self.image_size, self.source_size = image_size, source_size
        self.val_per_class, self.test_per_class = val_per_class, test_per_class
        self.breeds = breeds or type(self).breeds
        self.training = training
        self.workers = min(8, os.cpu_count() or 1) if workers is None else workers

    def corruptions(self) -> tuple[str, ...]:
        """None: BREEDS has no input-level shift."""
        return ()

    @cached_property
    def superclasses(self) -> Superclasses:
        """The superclasses and their source/target subclasses (raises MissingFileError without the files)."""
        return make_superclasses(self.paths.breeds_info_dir, self.breeds)

    def _image_problems(self) -> list[MissingFileError]:
        """The ImageNet root, its train/ and val/, then every class folder BREEDS needs, when absent."""
        root = self.paths.imagenet_dir
        if root is None:
            return [MissingFileError("ImageNet folder", "AUTOFT_IMAGENET_DIR (not set)", IMAGENET_WHERE)]
        splits = [Path(root) / "train", Path(root) / "val"]
        problems = [MissingFileError("ImageNet folder", d, IMAGENET_WHERE) for d in splits if not d.is_dir()]
        if problems or missing_files(self.paths.breeds_info_dir):
            return problems
        wnids = [w for group in self.superclasses.source + self.superclasses.target for w in group]
        return [MissingFileError(f"ImageNet class folder {w}", d / w, IMAGENET_WHERE)
                for d in splits for w in wnids if not (d / w).is_dir()]

    def _checkpoint_problems(self) -> list[MissingFileError]:
        path = self.paths.moco_checkpoint
        if path is None:
            return [MissingFileError("MoCo-v2 checkpoint", "AUTOFT_MOCO_CHECKPOINT (not set)", MOCO_WHERE)]
        return [] if Path(path).is_file() else [MissingFileError("MoCo-v2 checkpoint", path, MOCO_WHERE)]

    def _data_problems(self) -> list[MissingFileError]:
        return missing_files(self.paths.breeds_info_dir) + self._image_problems()

    def missing(self) -> list[str]:
        """Absent files, or the one error of a malformed hierarchy file (so that listing setups never fails)."""
        try:
            return [str(e) for e in self._data_problems() + self._checkpoint_problems()]
        except AutoFTError as exc:
            return [str(exc)]

    def _files(self, split: str, groups: tuple[tuple[str, ...], ...]) -> tuple[list[Path], torch.Tensor]:
        """The images of each group's class folders under `split`/, labelled with the group's index."""
        paths: list[Path] = []
        labels: list[int] = []
        for label, wnids in enumerate(groups):
            for wnid in wnids:
                folder = Path(self.paths.imagenet_dir) / split / wnid
                found = sorted(folder / e.name for e in os.scandir(folder)
                               if e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES)
                if not found:
                    raise MissingFileError(f"images of ImageNet class {wnid}", folder, IMAGENET_WHERE)
                paths += found
                labels += [label] * len(found)
        return paths, torch.tensor(labels, dtype=torch.long)

    def _load(self, paths: list[Path], labels: torch.Tensor, index: torch.Tensor) -> Split:
        chosen = [paths[i] for i in index.tolist()]
        files = ImageFiles(chosen, labels[index], eval_transform(self.image_size))
        return load_split(files, self.image_size, self.workers)

    def task(self, spec: TaskSpec) -> TaskData:
        spec = self.check(spec)
        if problems := self._data_problems():
            raise problems[0]
        classes = self.superclasses
        n = len(classes)
        generator = torch.Generator().manual_seed(spec.seed)
        src_paths, src_labels = self._files("train", classes.source)
        source = self._load(src_paths, src_labels, balanced_indices(src_labels, max(1, self.source_size // n),
                                                                    generator))
        groups = classes.target if spec.shift == "feature" else classes.source
        paths, labels = self._files("train", groups)
        per_val = min(self.val_per_class, int(torch.bincount(labels, minlength=n).min()) // 2)
        val_index = balanced_indices(labels, per_val, generator)
        rest = torch.ones(len(labels), dtype=torch.bool)
        rest[val_index] = False
        rest_index = torch.nonzero(rest).flatten()
        train_index = rest_index[balanced_indices(labels[rest_index], max(1, spec.shots // n), generator)]
        test_paths, test_labels = self._files("val", groups)
        test_index = balanced_indices(test_labels, self.test_per_class, generator)
        if spec.shift == "output":
            labels, test_labels = flipped_labels(labels, n), flipped_labels(test_labels, n)
        return TaskData(source, self._load(paths, labels, train_index), self._load(paths, labels, val_index),
                        self._load(test_paths, test_labels, test_index), n)

    def source_recipe(self) -> dict:
        """Everything the source model's weights depend on (its cache key)."""
        checkpoint = Path(self.paths.moco_checkpoint).resolve()
        stat = checkpoint.stat()
        return {"dataset": self.name, "breeds": asdict(self.breeds), "source": self.superclasses.source,
                "checkpoint": str(checkpoint), "checkpoint_size": stat.st_size,
                "checkpoint_mtime_ns": stat.st_mtime_ns, "image_size": self.image_size,
                "training": "finetune() LP then FT, test view, no augmentation", **asdict(self.training)}

    def _train_source(self, model: ResNet) -> None:
        """MoCo-v2 backbone, a seeded new head, then LP-FT on (a capped sample of) the source subclasses'
        train/ images, a few per superclass held out to watch the source accuracy."""
        paths, labels = self._files("train", self.superclasses.source)
        generator = torch.Generator().manual_seed(self.training.seed)
        bound = model.fc.in_features ** -0.5
        with torch.no_grad():
            model.fc.weight.uniform_(-bound, bound, generator=generator)
            model.fc.bias.uniform_(-bound, bound, generator=generator)
        held = balanced_indices(labels, self.training.holdout_per_class, generator)
        rest = torch.ones(len(labels), dtype=torch.bool)
        rest[held] = False
        rest_index = torch.nonzero(rest).flatten()
        train = rest_index[balanced_indices(labels[rest_index], self.training.per_class, generator)]
        load_moco(model, Path(self.paths.moco_checkpoint))
        held_out, train_split = self._load(paths, labels, held), self._load(paths, labels, train)
        data = TaskData(source=train_split, train=train_split, val=held_out, test=held_out,
                        num_classes=len(self.superclasses))
        train_lp_ft(model, data, self.training)

    def _source_model(self, shift: str) -> nn.Module:
        """The LP-FT'd MoCo-v2 ResNet-50 (one for both shifts), from the cache after its first training."""
        if problems := self._data_problems() + self._checkpoint_problems():
            raise problems[0]
        n = len(self.superclasses)
        return cached_model(f"{self.name}-mocov2-lpft", self.source_recipe(), lambda: NormalizedResNet(n),
                            self._train_source)


class Living17Setup(BreedsSetup):
    """BREEDS Living-17: 17 "living thing" superclasses at level 5, 2 source + 2 target subclasses each."""

    name = "breeds-living17"
    description = "BREEDS Living-17 (ImageNet, 17 classes): unseen subclasses or flipped labels"
    breeds = LIVING17
    recipe = replace(BreedsSetup.recipe, shots=17 * SHOTS_PER_CLASS)


class Entity30Setup(BreedsSetup):
    """BREEDS Entity-30: 30 superclasses at level 4, 4 source + 4 target subclasses each."""

    name = "breeds-entity30"
    description = "BREEDS Entity-30 (ImageNet, 30 classes): unseen subclasses or flipped labels"
    breeds = ENTITY30
    recipe = replace(BreedsSetup.recipe, shots=30 * SHOTS_PER_CLASS)
