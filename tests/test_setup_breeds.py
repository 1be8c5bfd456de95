"""BREEDS setups on a toy world: hierarchy files in the real formats, a tiny ImageFolder, a MoCo checkpoint.

Each toy image is one solid colour that encodes (ImageNet class, train/val, image number), so a test
can tell from the pixels alone which folder every image of a split was read from.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import resnet50
from torchvision.models.resnet import ResNet

from autoft_core import layers
from autoft_core.data.breeds_hierarchy import ROOT_WNID, WHERE_TO_GET, BreedsSpec, Hierarchy, make_superclasses
from autoft_core.errors import BadArgumentError, MissingFileError
from autoft_core.models.weights_cache import cached_path
from autoft_core.paths import DataPaths
from autoft_core.setups import breeds
from autoft_core.setups.base import TaskSpec
from autoft_core.models.normalized_resnet import IMAGENET_MEAN, IMAGENET_STD, NormalizedResNet
from autoft_core.setups.breeds import Entity30Setup, Living17Setup, SourceTraining, load_moco

LIVING = "n00004258"
S1, S2, S3 = "n10000051", "n10000052", "n10000053"  # level 5 under "living thing": 4, 5 and 3 classes
T = "n20000005"  # level 5 but not a living thing
E1, E2 = "n10000004", "n30000004"  # level 4: 12 and 8 classes
LEAVES = {S1: [f"n100001{i:02d}" for i in range(4)], S2: [f"n100002{i:02d}" for i in range(5)],
          S3: [f"n100003{i:02d}" for i in range(3)], T: [f"n200001{i:02d}" for i in range(4)],
          "dummy1": [f"n300001{i:02d}" for i in range(8)]}
ALL_LEAVES = [w for ws in LEAVES.values() for w in ws]
EDGES = [(ROOT_WNID, LIVING), (LIVING, "n10000002"), ("n10000002", "n10000003"), ("n10000003", E1),
         (LIVING, E1),  # a shorter second path: E1's level is the longest one, 4
         (E1, S1), (E1, S2), (E1, S3),
         (ROOT_WNID, "n20000001"), ("n20000001", "n20000002"), ("n20000002", "n20000003"),
         ("n20000003", "n20000004"), ("n20000004", T),
         (ROOT_WNID, "n30000001"), ("n30000001", "n30000002"), ("n30000002", "n30000003"),
         ("n30000003", E2), (E2, "dummy1"), (E2, "n39999999"),  # n39999999 has no ImageNet class below
         ("n39999999", "n39999998")]
EDGES += [(parent, leaf) for parent, leaves in LEAVES.items() for leaf in leaves]
TRAIN_IMAGES, VAL_IMAGES = 6, 3
SPLIT_GREEN = {"train": 50, "val": 200}


def colour(leaf: int, split: str, k: int) -> tuple[int, int, int]:
    return 8 + 10 * leaf, SPLIT_GREEN[split], 20 + 35 * k


def identify(x: torch.Tensor) -> list[tuple[str, str, int]]:
    """(class wnid, split, image number) of each solid-colour image in a batch."""
    rgb = (x.mean(dim=(2, 3)) * 255).tolist()
    return [(ALL_LEAVES[round((r - 8) / 10)], "train" if g < 125 else "val", round((b - 20) / 35))
            for r, g, b in rgb]


pytestmark = pytest.mark.usefixtures("one_thread")


def write_hierarchy(info: Path, edges: list[tuple[str, str]], classes: list[str]) -> Path:
    """The three BREEDS files, in their formats, for these edges and ImageNet classes."""
    info.mkdir()
    class_info = [[i, w, f"class {w}"] for i, w in enumerate(classes)]
    (info / "dataset_class_info.json").write_text(json.dumps(class_info))
    (info / "class_hierarchy.txt").write_text("".join(f"{p} {c}\n" for p, c in edges))
    nodes = sorted({n for edge in edges for n in edge} - set(classes))
    (info / "node_names.txt").write_text("".join(f"{n}\tnode {n}\n" for n in nodes))
    return info


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> DataPaths:
    root = tmp_path_factory.mktemp("breeds")
    info = write_hierarchy(root / "hierarchy", EDGES, ALL_LEAVES + ["n99999999"])
    for i, wnid in enumerate(ALL_LEAVES):
        for split, count in (("train", TRAIN_IMAGES), ("val", VAL_IMAGES)):
            folder = root / "imagenet" / split / wnid
            folder.mkdir(parents=True)
            for k in range(count):
                image = Image.new("RGB", (40, 48), colour(i, split, k))
                image.save(folder / f"{wnid}_{k}.JPEG", quality=100, subsampling=0)
    state = resnet50().state_dict()
    for name, value in state.items():
        if name.endswith("running_mean"):
            value.copy_(0.1 * torch.randn_like(value))
        elif name.endswith("running_var"):
            value.copy_(0.5 + torch.rand_like(value))
    moco = {f"module.encoder_q.{k}": v for k, v in state.items() if not k.startswith("fc.")}
    moco["module.encoder_q.fc.0.weight"] = torch.randn(4, 2048)  # MoCo's MLP head: must be left out
    moco["module.queue"] = torch.randn(128, 8)
    torch.save({"epoch": 800, "arch": "resnet50", "state_dict": moco}, root / "moco_v2_800ep_pretrain.pth.tar")
    return DataPaths(imagenet_dir=root / "imagenet", breeds_info_dir=info,
                     moco_checkpoint=root / "moco_v2_800ep_pretrain.pth.tar")


def living(paths: DataPaths, **kwargs) -> Living17Setup:
    options = dict(image_size=32, source_size=8, val_per_class=2, test_per_class=3, workers=0,
                   training=SourceTraining(lp_epochs=1, ft_epochs=1, batch_size=24, per_class=12, holdout_per_class=1))
    return Living17Setup(paths, **{**options, **kwargs})


def test_living17_construction_follows_breeds(world: DataPaths) -> None:
    classes = living(world).superclasses
    assert classes.wnids == (S1, S2)  # S3 has too few classes, T is not a living thing
    assert classes.names == (f"node {S1}", f"node {S2}")
    rng = np.random.RandomState(2)  # BREEDS' seed, drawn superclass by superclass in WordNet-ID order
    for wnid, source, target in zip(classes.wnids, classes.source, classes.target):
        pool = sorted(LEAVES[wnid])
        drawn = [pool[i] for i in rng.choice(len(pool), 4, replace=False)]
        assert (source, target) == (tuple(drawn[:2]), tuple(drawn[2:]))
        assert len(source) == len(target) == 2 and not set(source) & set(target)


def test_entity30_construction_follows_breeds(world: DataPaths) -> None:
    classes = Entity30Setup(world).superclasses
    assert classes.wnids == (E1, E2)  # n20000004 has only 4 classes below it
    assert set(classes.source[1] + classes.target[1]) == set(LEAVES["dummy1"])
    assert set(classes.source[0] + classes.target[0]) <= set(LEAVES[S1] + LEAVES[S2] + LEAVES[S3])
    for source, target in zip(classes.source, classes.target):
        assert len(source) == len(target) == 4 and not set(source) & set(target)


def test_hierarchy_levels_are_longest_paths_and_prune_classless_nodes(world: DataPaths) -> None:
    hierarchy = Hierarchy(world.breeds_info_dir)
    assert hierarchy.level[E1] == 4 and hierarchy.level[S1] == 5
    assert "n39999999" not in hierarchy.level and "n99999999" not in hierarchy.level


def test_split_pools_the_classes_of_each_child_of_the_first_branching_node(tmp_path: Path) -> None:
    # X has one child Y; Y's children A and B share class l3, which BREEDS' pool then holds twice
    edges = [(ROOT_WNID, "X"), ("X", "Y"), ("Y", "A"), ("Y", "B"), ("A", "l1"), ("A", "l2"), ("A", "l3"),
             ("B", "l3"), ("B", "l4"), ("B", "l5")]
    info = write_hierarchy(tmp_path / "hierarchy", edges, ["l1", "l2", "l3", "l4", "l5"])
    classes = make_superclasses(info, BreedsSpec(level=1, ancestor=None, n_subclasses=2))
    # RandomState(2).choice(6, 2) on [l1 l2 l3 l3 l4 l5]; a pool without the duplicate would give l3, l5
    assert (classes.source, classes.target) == ((("l4",),), (("l2",),))


def test_feature_shift_reads_source_and_target_subclasses(world: DataPaths) -> None:
    setup = living(world)
    classes = setup.superclasses
    data = setup.task(TaskSpec("feature", shots=6, seed=0))
    assert data.num_classes == 2
    assert data.source.x.shape[1:] == (3, 32, 32) and data.source.x.dtype == torch.float32
    assert (len(data.source), len(data.train), len(data.val), len(data.test)) == (8, 6, 4, 6)
    for split, groups, folder in ((data.source, classes.source, "train"), (data.train, classes.target, "train"),
                                  (data.val, classes.target, "train"), (data.test, classes.target, "val")):
        assert torch.bincount(split.y, minlength=2).tolist() == [len(split) // 2] * 2  # balanced, in range
        for (wnid, read_from, _), label in zip(identify(split.x), split.y.tolist()):
            assert wnid in groups[label] and read_from == folder
    assert not set(identify(data.train.x)) & set(identify(data.val.x))


def test_output_shift_flips_labels_of_source_subclasses(world: DataPaths) -> None:
    setup = living(world)
    classes = setup.superclasses
    data = setup.task(TaskSpec("output", shots=6, seed=0))
    for split in (data.train, data.val, data.test):
        true = [next(i for i, g in enumerate(classes.source) if w in g) for w, _, _ in identify(split.x)]
        assert split.y.tolist() == [1 - t for t in true]


def test_splits_are_fixed_by_seed(world: DataPaths) -> None:
    setup = living(world)
    first, again, other = (setup.task(TaskSpec("feature", shots=4, seed=s)) for s in (0, 0, 1))
    for a, b in zip((first.source, first.train, first.val, first.test), (again.source, again.train,
                                                                          again.val, again.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert identify(first.train.x) != identify(other.train.x)


def test_input_shift_is_rejected(world: DataPaths) -> None:
    with pytest.raises(BadArgumentError, match="valid: feature, output"):
        living(world).task(TaskSpec("input", corruption="frost"))


def test_moco_weights_are_loaded(world: DataPaths) -> None:
    model = NormalizedResNet(num_classes=2)
    fc = model.fc.weight.clone()
    load_moco(model, world.moco_checkpoint)
    state = torch.load(world.moco_checkpoint, weights_only=True)["state_dict"]
    for name in ("conv1.weight", "layer4.2.conv3.weight", "layer2.0.bn1.running_var"):
        assert torch.equal(model.state_dict()[name], state[f"module.encoder_q.{name}"])
    assert torch.equal(model.fc.weight, fc)


def test_source_model_is_trained_cached_and_has_five_blocks(world: DataPaths, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOFT_CACHE", str(tmp_path))
    setup = living(world)
    model = setup.source_model("feature")
    conv1 = torch.load(world.moco_checkpoint, weights_only=True)["state_dict"]["module.encoder_q.conv1.weight"]
    assert not torch.equal(model.conv1.weight, conv1)  # fine-tuned...
    assert torch.allclose(model.conv1.weight, conv1, atol=1e-3)  # ...from MoCo, at lr 1e-5
    assert model.fc.out_features == 2 and not model.training
    assert [layer.name for layer in layers.partition(model, "block")] == \
        ["conv1+layer1", "layer2", "layer3", "layer4", "fc"]
    x = torch.rand(2, 3, 32, 32)
    normalised = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), ResNet.forward(model, normalised), atol=1e-5)

    def no_training(*args: object) -> None:
        raise AssertionError("retrained although the recipe is cached")

    monkeypatch.setattr(breeds, "train_lp_ft", no_training)
    assert cached_path(f"{setup.name}-mocov2-lpft", setup.source_recipe()).is_file()
    again = setup.source_model("output")
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_missing_hierarchy_file_is_named(world: DataPaths, tmp_path: Path) -> None:
    info = shutil.copytree(world.breeds_info_dir, tmp_path / "hierarchy")
    (info / "class_hierarchy.txt").unlink()
    setup = living(DataPaths(imagenet_dir=world.imagenet_dir, breeds_info_dir=info,
                             moco_checkpoint=world.moco_checkpoint))
    assert setup.missing() == [f"BREEDS hierarchy file not found at {info / 'class_hierarchy.txt'}. "
                               f"{WHERE_TO_GET}"]
    with pytest.raises(MissingFileError, match="imagenet_class_hierarchy/modified.*BREEDS-Benchmarks") as error:
        setup.task(TaskSpec("feature"))
    assert error.value.path == info / "class_hierarchy.txt"


def test_missing_imagenet_class_folder_is_named(world: DataPaths, tmp_path: Path) -> None:
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
    setup = living(DataPaths(imagenet_dir=tmp_path, breeds_info_dir=world.breeds_info_dir,
                             moco_checkpoint=world.moco_checkpoint))
    first = setup.superclasses.source[0][0]
    with pytest.raises(MissingFileError, match="ILSVRC-2012") as error:
        setup.task(TaskSpec("feature"))
    assert error.value.path == tmp_path / "train" / first
    assert len(setup.missing()) == 2 * 8  # every class folder of both splits
    shutil.copytree(world.imagenet_dir / "val", tmp_path / "val", dirs_exist_ok=True)
    assert all(f"{tmp_path / 'train'}/" in line for line in setup.missing())


def test_missing_checkpoint_is_named(world: DataPaths, tmp_path: Path) -> None:
    absent = tmp_path / "moco_v2_800ep_pretrain.pth.tar"
    setup = living(DataPaths(imagenet_dir=world.imagenet_dir, breeds_info_dir=world.breeds_info_dir,
                             moco_checkpoint=absent))
    with pytest.raises(MissingFileError, match="facebookresearch/moco") as error:
        setup.source_model("feature")
    assert error.value.path == absent
    assert setup.missing() == [str(error.value)]


def test_unconfigured_paths_are_listed() -> None:
    lines = Living17Setup(DataPaths()).missing()
    assert len(lines) == 3
    for line, variable in zip(lines, ("AUTOFT_BREEDS_INFO_DIR", "AUTOFT_IMAGENET_DIR", "AUTOFT_MOCO_CHECKPOINT")):
        assert variable in line
