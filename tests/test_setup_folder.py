"""The `folder` setup on a tiny ImageFolder (two classes, six 16-pixel images each) with random-weight
checkpoints of resnet18 (a 1000-class head, so it is replaced) and a ViT (a fitting 2-class head):
every method runs end to end and lands a store row, and each broken input gives one clear line."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

from autoft_core import api
from autoft_core.cli import main
from autoft_core.errors import AutoFTError, BadNumberError
from autoft_core.methods import method_names
from autoft_core.models.torchvision_archs import ARCHS, build
from autoft_core.models.vit import CONFIGS
from autoft_core.setups import get_setup
from autoft_core.setups.folder import IMAGE_SIZES, FolderOptions, _built, folder_setup
from autoft_core.store import ResultStore

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = "16"


def _image_folder(root: Path, blue: int, per_class: int = 6, classes: tuple[str, ...] = ("cat", "dog")) -> Path:
    """Noise images, red for the first class and green for the second; `blue` tints a subpopulation."""
    rng = np.random.default_rng(blue)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 60, (20, 24, 3)).astype(np.uint8)
            image[..., c] += 150
            image[..., 2] += blue
            Image.fromarray(image).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def own(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("own")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        torch.save(build("resnet18", 1000, 16).state_dict(), root / "resnet18.pt")
        save_file(build("vit_mini", 2, 16).state_dict(), str(root / "vit.safetensors"))
    return {"source": _image_folder(root / "source", 0), "target": _image_folder(root / "target", 90),
            "resnet18": root / "resnet18.pt", "vit_mini": root / "vit.safetensors", "root": root}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    """Fitted heads go to a throw-away cache, not the worktree's."""
    monkeypatch.setenv("AUTOFT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _argv(own: dict[str, Path], arch: str, *extra: str, source: Path | None = None,
          target: Path | None = None, checkpoint: Path | None = None) -> list[str]:
    return ["--setup", "folder", "--source-dir", str(source or own["source"]),
            "--target-dir", str(target or own["target"]), "--checkpoint", str(checkpoint or own[arch]),
            "--arch", arch, "--image-size", SIZE, *extra]


def _main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


RUNS = [("vit_mini", m) for m in method_names()] + [  # resnet18 (11M weights): one method of each kind
    ("resnet18", m) for m in ("full", "lp-ft", "auto-rgn", "criticality-identity", "surprise", "auto-snr")]


@pytest.mark.parametrize("arch, method", RUNS)
def test_every_method_runs_end_to_end_and_lands_a_store_row(own, arch, method, tmp_path, capsys):
    store = tmp_path / "r.sqlite"
    argv = ["finetune", *_argv(own, arch, "--shift", "feature", "--method", method, "--epochs", "1",
                               "--json", "--store", str(store))]
    assert _main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    expected = len(api.layer_partition(api.pretrained_model(_name(own, arch)), "module"))
    assert len(out["layers"]) == len(out["weights"]) == expected
    assert all(np.isfinite(w) and w >= 0 for w in out["weights"]) and max(out["weights"]) > 0
    rows = ResultStore(store).frame()
    assert len(rows) == 1 and rows.iloc[0]["setup"].startswith("folder?") and rows.iloc[0]["method"] == method


def _name(own: dict[str, Path], arch: str) -> str:
    return folder_setup(own["source"], own["target"], own[arch], arch, SIZE)


def test_the_vit_partition_is_embedding_attention_mlp_and_head(own):
    layers = api.layer_partition(api.pretrained_model(_name(own, "vit_mini")))
    blocks = range(CONFIGS["vit_mini"]["depth"])
    assert [layer.name for layer in layers] == ["embed", *(f"block{i}.{p}" for i in blocks for p in ("attn", "mlp")),
                                                "head"]


def test_a_head_of_another_class_count_is_replaced_fitted_and_said_so(own):
    name = _name(own, "resnet18")
    assert "1000 classes" in " ".join(get_setup(name).notes()) and not get_setup(_name(own, "vit_mini")).notes()
    model, unfitted = api.pretrained_model(name), _built(get_setup(name).options)[0].eval()
    checkpoint = torch.load(own["resnet18"], weights_only=True)
    assert model.fc.out_features == 2
    assert all(torch.equal(model.state_dict()[k], v) for k, v in checkpoint.items() if not k.startswith("fc."))
    source = api.load_task(name, "feature").source
    with torch.no_grad():
        losses = [F.cross_entropy(m(source.x), source.y).item() for m in (model, unfitted)]
    assert losses[0] < losses[1]


def test_shifts_flip_labels_corrupt_images_and_keep_the_target_as_it_is(own):
    name = _name(own, "vit_mini")
    feature, output = api.load_task(name, "feature"), api.load_task(name, "output")
    corrupted = api.load_task(name, "input", corruption="gaussian_noise", severity=5)
    assert torch.equal(feature.test.x, output.test.x) and torch.equal(output.test.y, 1 - feature.test.y)
    assert torch.equal(corrupted.test.y, feature.test.y) and not torch.equal(corrupted.test.x, feature.test.x)
    source_blue, target_blue = feature.source.x[:, 2].mean(), feature.test.x[:, 2].mean()
    assert target_blue - source_blue > 0.25  # the target folder's subpopulation, as it is


def test_target_split_by_seed_or_given_as_folders(own, tmp_path):
    data = api.load_task(_name(own, "vit_mini"), "feature", seed=1)
    assert (len(data.train), len(data.val), len(data.test)) == (6, 2, 4)  # of 6 per class: 3 / 1 / 2
    given = tmp_path / "given"
    for split, count in (("train", 4), ("val", 3), ("test", 5)):
        _image_folder(given / split, 90, per_class=count)
    data = api.load_task(folder_setup(own["source"], given, own["vit_mini"], "vit_mini", SIZE), "feature")
    assert (len(data.train), len(data.val), len(data.test)) == (8, 6, 10)


def test_other_folders_or_changed_files_are_other_runs(own, tmp_path):
    other = _image_folder(tmp_path / "other", 30)
    assert folder_setup(own["source"], other, own["vit_mini"], "vit_mini", SIZE) != _name(own, "vit_mini")
    name = folder_setup(own["source"], other, own["vit_mini"], "vit_mini", SIZE)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(other / "cat" / "new.png")
    assert folder_setup(own["source"], other, own["vit_mini"], "vit_mini", SIZE) != name
    with pytest.raises(AutoFTError, match="changed since this run was named"):
        api.load_task(name, "feature")


def test_two_spellings_of_the_same_files_are_one_setup(own, tmp_path):
    """A symlinked folder, `..` and a symlinked checkpoint name the same setup (one store key, one fingerprint)."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "linked_source").symlink_to(own["source"], target_is_directory=True)
    blob = tmp_path / "blob"  # as Hugging Face's cache: model.safetensors a link to a file without the suffix
    blob.write_bytes(own["vit_mini"].read_bytes())
    (tmp_path / "model.safetensors").symlink_to(blob)
    dotted_target = tmp_path / "sub" / ".." / os.path.relpath(own["target"], tmp_path)
    spellings = [folder_setup(own["source"], own["target"], tmp_path / "model.safetensors", "vit_mini", SIZE),
                 folder_setup(tmp_path / "linked_source", dotted_target, tmp_path / "sub" / ".." / "model.safetensors",
                              "vit_mini", SIZE)]
    assert spellings[0] == spellings[1]
    assert api.pretrained_model(spellings[1]).state_dict().keys() == load_file(str(blob)).keys()


def test_image_sizes_are_parsed_as_every_other_number(own):
    """Whole-number floats and padded digits are the size they spell; others are refused with its bounds."""
    arch = "vit_mini"
    options = dict(source_dir=own["source"], target_dir=own["target"], checkpoint=own[arch], arch=arch)
    assert folder_setup(**options, image_size=16.0) == folder_setup(**options, image_size=" 16") == _name(own, arch)
    with pytest.raises(BadNumberError, match=re.escape("image size 'x' is not a whole number from 8 to 1024")):
        folder_setup(**options, image_size="x")


def test_the_name_carries_the_options_there_and_back(own):
    options = FolderOptions(own["source"], own["target"], own["vit_mini"], "vit_mini", 32, (0.5,) * 3, (0.25,) * 3)
    assert FolderOptions.from_query(options.name().partition("?")[2]) == options


def _broken(own: dict[str, Path], tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """Each broken input: (finetune arguments, a phrase its one-line message must hold)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    no_images = tmp_path / "no_images"
    (no_images / "cat").mkdir(parents=True)
    other_classes = _image_folder(tmp_path / "other_classes", 0, classes=("cat", "cow"))
    too_few = _image_folder(tmp_path / "too_few", 0, per_class=2)
    unreadable = _image_folder(tmp_path / "unreadable", 0)
    (unreadable / "cat" / "0.png").write_bytes(b"not a png")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(256))
    a_list = tmp_path / "list.pt"
    torch.save([1, 2, 3], a_list)
    one_class = _image_folder(tmp_path / "one_class", 0, classes=("cat",))
    no_val = tmp_path / "no_val"
    for split in ("train", "test"):
        _image_folder(no_val / split, 90)
    return {
        "missing source": (_argv(own, "resnet18", source=tmp_path / "nowhere"), "source folder not found"),
        "no class folders": (_argv(own, "resnet18", source=empty), "has no class sub-folders"),
        "empty class folder": (_argv(own, "resnet18", source=no_images), "holds no images"),
        "other classes": (_argv(own, "resnet18", target=other_classes), "give both the same class sub-folders"),
        "too few target images": (_argv(own, "resnet18", target=too_few), "needs at least 3"),
        "unreadable image": (_argv(own, "resnet18", target=unreadable), "could not read image"),
        "missing checkpoint": (_argv(own, "resnet18", checkpoint=tmp_path / "no.pt"), "checkpoint not found"),
        "garbage checkpoint": (_argv(own, "resnet18", checkpoint=garbage), "could not read checkpoint"),
        "not a state dict": (_argv(own, "resnet18", checkpoint=a_list), "not a state dict"),
        "another architecture": (_argv(own, "vit_mini", checkpoint=own["resnet18"]), "does not fit --arch vit_mini"),
        "unknown architecture": (_argv(own, "resnet18")[:-4] + ["--arch", "resnet9", "--image-size", SIZE],
                                 "unknown or invalid arch 'resnet9'"),
        "no checkpoint given": (_argv(own, "resnet18")[:6], "needs --checkpoint"),
        "folder option without folder": (["--setup", "digits", "--source-dir", str(own["source"])],
                                         "only with --setup folder"),
        "folder as checkpoint": (_argv(own, "resnet18", checkpoint=empty), "is a folder"),
        "non-finite mean": (_argv(own, "resnet18") + ["--mean", "nan,0,0"], "three comma-separated finite numbers"),
        "non-finite std": (_argv(own, "resnet18") + ["--std", "inf,1,1"], "three comma-separated finite numbers"),
        "size off the ViT patches": (_argv(own, "resnet18")[:-4] + ["--arch", "vit_tiny", "--image-size", "20"],
                                     "--image-size 20 is not a multiple of 16, the patch size of --arch vit_tiny"),
        "size too small for the arch": (_argv(own, "resnet18")[:-4] + ["--arch", "convnext_tiny", "--image-size", "16"],
                                        "--image-size 16 is not at least 32"),
        "size out of range": (_argv(own, "resnet18")[:-1] + ["4"],
                              "image size '4' is not a whole number from 8 to 1024"),
        "one class": (_argv(own, "resnet18", source=one_class, target=one_class), "give at least 2 classes"),
        "a split folder missing": (_argv(own, "resnet18", target=no_val), "has test/ and train/ but no val/"),
    }


@pytest.mark.parametrize("case", ["missing source", "no class folders", "empty class folder", "other classes",
                                  "too few target images", "unreadable image", "missing checkpoint",
                                  "garbage checkpoint", "not a state dict", "another architecture",
                                  "unknown architecture", "no checkpoint given", "folder option without folder",
                                  "folder as checkpoint", "non-finite mean", "non-finite std",
                                  "size off the ViT patches", "size too small for the arch", "size out of range",
                                  "one class",
                                  "a split folder missing"])
def test_broken_folders_and_checkpoints_give_one_clear_line_and_exit_2(own, tmp_path, capsys, case):
    argv, phrase = _broken(own, tmp_path)[case]
    store = tmp_path / "r.sqlite"
    code = _main(["finetune", *argv, "--shift", "feature", "--method", "full", "--epochs", "1", "--store", str(store)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and phrase in err, err
    assert "weights_only" not in err  # torch's advice to unpickle with code execution is never passed on
    assert not store.exists() or ResultStore(store).frame().empty


def _forward_works(arch: str, size: int) -> bool:
    """Whether `arch` builds for `size` images and runs them forward (training mode, a batch of 2)."""
    try:
        with torch.no_grad():
            build(arch, 2, size).train()(torch.rand(2, 3, size, size))
    except (ValueError, RuntimeError):
        return False
    return True


@pytest.mark.parametrize("arch", ARCHS)
def test_each_architecture_takes_the_image_sizes_the_options_allow_and_no_smaller(arch):
    smallest, multiple = IMAGE_SIZES.get(arch, (1, 1))
    assert _forward_works(arch, max(8, smallest)) and _forward_works(arch, max(8, smallest) + multiple)
    if arch in IMAGE_SIZES:
        assert not _forward_works(arch, smallest - 1)
        assert multiple == 1 or not _forward_works(arch, smallest + 1)


@pytest.mark.parametrize("change, phrase", [
    ({"image_size": 16.7}, "image size 16.7"), ({"image_size": None}, "image size None"),
    ({"image_size": True}, "image size True"), ({"source_dir": None}, "source_dir None"),
    ({"checkpoint": 3}, "checkpoint 3"), ({"arch": ["vit_mini"]}, "arch ['vit_mini']"),
    ({"mean": None}, "three comma-separated finite numbers"), ({"std": 0.5}, "three comma-separated finite numbers"),
])
def test_the_api_refuses_options_of_the_wrong_type_in_one_line(own, change, phrase):
    options = {"source_dir": own["source"], "target_dir": own["target"], "checkpoint": own["vit_mini"],
               "arch": "vit_mini", "image_size": 16, **change}
    with pytest.raises(AutoFTError, match=re.escape(phrase)):
        folder_setup(**options)
