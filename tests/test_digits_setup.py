"""The embedded digits setup: the renderer, each shift's construction, the split sizes, effective shots,
the pretrained source models, and the data layer's independence from training code."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from autoft_core.config import RunConfig
from autoft_core.data.digits import PER_DIGIT, glyph_parts, glyphs, render, rendered
from autoft_core.data.task import Split
from autoft_core.errors import BadArgumentError
from autoft_core.evaluation import accuracy
from autoft_core.experiment import resolve
from autoft_core.setups import TaskSpec, get_setup

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup():
    return get_setup("digits")


def _rows(x: torch.Tensor) -> list[bytes]:
    return [row.numpy().tobytes() for row in x.flatten(1)]


def _target_digit(x: torch.Tensor) -> list[int]:
    """The digit each image was rendered as, looked up in the target half's renders."""
    images, digits = rendered("target")
    lookup = dict(zip(_rows(images), digits.tolist()))
    return [lookup[row] for row in _rows(x)]


def test_renderer_is_deterministic_per_seed_and_cifar_shaped():
    glyph = glyphs()[0][:16]
    a, b = render(glyph, torch.Generator().manual_seed(5)), render(glyph, torch.Generator().manual_seed(5))
    c = render(glyph, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (16, 3, 32, 32) and a.dtype == torch.float32 and 0 <= a.min() and a.max() <= 1


def test_glyph_halves_are_disjoint_complete_and_hold_every_digit():
    parts, (_, digits) = glyph_parts(), glyphs()
    source, target = set(parts["source"].tolist()), set(parts["target"].tolist())
    assert not source & target and len(source | target) == len(digits) == 1797
    assert set(digits[parts["source"]].tolist()) == set(digits[parts["target"]].tolist()) == set(range(10))


def test_each_half_renders_its_count_of_every_digit():
    for part in ("source", "target"):
        images, digits = rendered(part)
        assert images.shape == (10 * PER_DIGIT[part], 3, 32, 32)
        assert torch.bincount(digits).tolist() == [PER_DIGIT[part]] * 10
        assert len(set(_rows(images[:200]))) == 200  # every render differs


@pytest.mark.parametrize("shift, classes, per_class", [("output", 10, 100), ("input", 10, 100), ("feature", 5, 200)])
def test_splits_hold_exact_balanced_counts(setup, shift, classes, per_class):
    spec = TaskSpec(shift, "frost" if shift == "input" else None, 5, shots=3 * classes, seed=2)
    task = setup.task(spec)
    assert task.num_classes == classes
    for split, count in ((task.test, per_class), (task.val, per_class), (task.train, 3)):
        assert torch.bincount(split.y, minlength=classes).tolist() == [count] * classes


def test_splits_are_disjoint_and_fixed_by_seed(setup):
    a, b, c = (setup.task(TaskSpec("output", shots=50, seed=s)) for s in (3, 3, 4))
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.x, b.test.x)
    assert not torch.equal(a.test.x, c.test.x)
    ids = [set(_rows(s.x)) for s in (a.train, a.val, a.test)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])


@pytest.mark.parametrize("shift, asked, stored", [("output", 15, 10), ("output", 19, 10), ("output", 1, 10),
                                                  ("output", 250, 250), ("output", 10**6, 1000),
                                                  ("feature", 12, 10), ("feature", 10**6, 1000)])
def test_shots_are_effective_whole_shots_per_class_and_what_is_stored(setup, shift, asked, stored):
    assert setup.check(TaskSpec(shift, shots=asked)).shots == stored
    assert resolve(RunConfig(shift=shift, shots=asked)).shots == stored
    assert len(setup.task(TaskSpec(shift, shots=asked)).train) == stored


def test_more_shots_add_images_to_fewer_shots(setup):
    small, large = (setup.task(TaskSpec("input", "gaussian_noise", 5, shots=k, seed=1)) for k in (20, 60))
    assert set(_rows(small.train.x)) < set(_rows(large.train.x))  # corrupted the same way at every K


def test_output_shift_is_exactly_nine_minus_y(setup):
    task = setup.task(TaskSpec("output", shots=100, seed=0))
    for split in (task.train, task.val, task.test):
        assert split.y.tolist() == [9 - d for d in _target_digit(split.x)]


def test_feature_shift_uses_unseen_digits_of_each_superclass(setup):
    task = setup.task(TaskSpec("feature", shots=50, seed=0))
    source_images, source_digits = rendered("source")
    source_lookup = dict(zip(_rows(source_images), source_digits.tolist()))
    assert {source_lookup[row] for row in _rows(task.source.x)} == {0, 1, 2, 3, 4}
    assert torch.equal(task.source.y, torch.tensor([source_lookup[row] for row in _rows(task.source.x)]))
    for split in (task.train, task.val, task.test):  # superclass k = {k, k + 5}: the target sees k + 5
        assert split.y.tolist() == [d - 5 for d in _target_digit(split.x)]


def test_input_shift_corrupts_the_clean_target_and_keeps_labels(setup):
    clean = setup.task(TaskSpec("output", seed=0))
    noisy = setup.task(TaskSpec("input", "gaussian_noise", 5, seed=0))
    assert torch.equal(noisy.test.y, 9 - clean.test.y)  # the same images in the same order
    assert (noisy.test.x - clean.test.x).abs().mean() > 0.05


def test_source_models_classify_the_clean_target_and_fail_on_the_flip(setup):
    model = setup.source_model("input")
    flipped = setup.task(TaskSpec("output", seed=0)).test
    assert accuracy(model, flipped) < 0.1
    assert accuracy(model, Split(flipped.x, 9 - flipped.y)) > 0.8
    feature = setup.task(TaskSpec("feature", seed=0))
    assert accuracy(setup.source_model("feature"), feature.source) > 0.85


def test_source_model_is_a_fresh_copy(setup):
    a, b = setup.source_model("output"), setup.source_model("output")
    with torch.no_grad():
        a.head.weight.zero_()
    assert b.head.weight.abs().sum() > 0


@pytest.mark.parametrize("spec, match", [(TaskSpec("sideways"), "shift"),
                                         (TaskSpec("input", "fog", 5), "corruption"),
                                         (TaskSpec("input", "frost", 6), "severity"),
                                         (TaskSpec("output", shots=0), "shots")])
def test_bad_task_specs_are_clear_errors(setup, spec, match):
    with pytest.raises(BadArgumentError, match=match):
        setup.task(spec)


def test_the_data_layer_imports_no_training_code():
    data = Path(__file__).resolve().parents[1] / "autoft_core" / "data"
    forbidden = {"finetune", "layers", "methods", "models", "setups", "experiment", "experiments"}
    for path in data.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level >= 2:  # from ..x import y / from .. import x
                names = [node.module] if node.module else [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module.removeprefix("autoft_core.")] if node.module.startswith("autoft_core.") else []
            elif isinstance(node, ast.Import):
                names = [a.name.removeprefix("autoft_core.") for a in node.names if a.name.startswith("autoft_core.")]
            else:
                continue
            assert not {n.split(".")[0] for n in names} & forbidden, f"{path.name} imports {names}"
