"""The embedded digits setup: each shift's construction, splits, and the pretrained source models."""
from __future__ import annotations

import pytest
import torch

from autoft_core.data.digits import coloured_digits, source_target_split
from autoft_core.errors import BadArgumentError
from autoft_core.evaluation import accuracy
from autoft_core.setups import TaskSpec, get_setup


@pytest.fixture(scope="module")
def setup():
    return get_setup("digits")


def _row_ids(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x.flatten(1)}


def test_images_have_cifar_shape_and_range():
    images, labels = coloured_digits()
    assert images.shape == (1797, 3, 32, 32) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert set(labels.tolist()) == set(range(10))


def test_source_and_target_parts_are_disjoint_and_complete():
    source, target = source_target_split()
    assert not set(source.tolist()) & set(target.tolist())
    assert len(source) + len(target) == 1797


def test_output_shift_is_exactly_nine_minus_y(setup):
    images, labels = coloured_digits()
    lookup = {row.numpy().tobytes(): int(y) for row, y in zip(images.flatten(1), labels)}
    task = setup.task(TaskSpec("output", seed=0))
    for split in (task.train, task.val, task.test):
        originals = torch.tensor([lookup[row.numpy().tobytes()] for row in split.x.flatten(1)])
        assert torch.equal(split.y, 9 - originals)


def test_feature_shift_uses_disjoint_digits_per_superclass(setup):
    images, labels = coloured_digits()
    lookup = {row.numpy().tobytes(): int(y) for row, y in zip(images.flatten(1), labels)}
    task = setup.task(TaskSpec("feature", seed=0))
    assert task.num_classes == 5
    source_digits = {lookup[r.numpy().tobytes()] for r in task.source.x.flatten(1)}
    target_digits = {lookup[r.numpy().tobytes()] for r in torch.cat([task.train.x, task.test.x]).flatten(1)}
    assert source_digits == {0, 1, 2, 3, 4} and target_digits == {5, 6, 7, 8, 9}
    for split in (task.train, task.test):  # superclass k = {k, k + 5}
        digits = torch.tensor([lookup[r.numpy().tobytes()] for r in split.x.flatten(1)])
        assert torch.equal(split.y, digits - 5)
    assert torch.equal(task.source.y, task.source.y.clamp(0, 4))


def test_input_shift_corrupts_the_target_and_keeps_labels(setup):
    clean = setup.task(TaskSpec("output", seed=0))
    noisy = setup.task(TaskSpec("input", "gaussian_noise", 5, seed=0))
    assert torch.equal(noisy.test.y, 9 - clean.test.y)  # same images and order; only flip differs
    assert (noisy.test.x - clean.test.x).abs().mean() > 0.05


def test_splits_are_disjoint_fixed_by_seed_and_balanced(setup):
    a = setup.task(TaskSpec("output", shots=50, seed=3))
    b = setup.task(TaskSpec("output", shots=50, seed=3))
    c = setup.task(TaskSpec("output", shots=50, seed=4))
    assert torch.equal(a.train.x, b.train.x) and not torch.equal(a.train.x, c.train.x)
    ids = [_row_ids(s.x) for s in (a.train, a.val, a.test)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert len(a.test) >= 500 and len(a.train) == 50
    assert torch.bincount(a.train.y, minlength=10).tolist() == [5] * 10


def test_default_shots_take_all_target_training_images(setup):
    task = setup.task(TaskSpec("output", seed=0))
    assert 300 < len(task.train) <= 1000


def test_pretrained_source_models_are_accurate_on_clean_target_and_fail_on_flip(setup):
    model = setup.source_model("input")
    clean_target = setup.task(TaskSpec("output", seed=0)).test
    assert accuracy(model, clean_target) < 0.1  # the flip defeats it ...
    unflipped = type(clean_target)(clean_target.x, 9 - clean_target.y)
    assert accuracy(model, unflipped) > 0.9  # ... which it classifies well unflipped
    feature = setup.source_model("feature")
    assert accuracy(feature, setup.task(TaskSpec("feature", seed=0)).source) > 0.9


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
