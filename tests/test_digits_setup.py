"""The embedded digits setup: rendering, each shift's construction, exact split sizes, effective shots,
and the pretrained source model."""
from __future__ import annotations

import pytest
import torch

from autoft_core.core.recipe import TaskSpec
from autoft_core.data import digits, digits_tasks
from autoft_core.evaluation import accuracy
from autoft_core.setups import get_setup
from autoft_core.setups.digits import CLASSES, PER_CLASS, PRETRAIN
from autoft_core.setups.source_training import holdout_task

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup():
    return get_setup("digits")


def _lookup(x: torch.Tensor, y: torch.Tensor) -> dict[bytes, int]:
    return {row.numpy().tobytes(): int(label) for row, label in zip(x.flatten(1), y)}


def test_rendering_is_seeded_cifar_shaped_and_in_range():
    glyph, _ = digits.glyphs()
    first = digits.render(glyph[:16], torch.Generator().manual_seed(5))
    again = digits.render(glyph[:16], torch.Generator().manual_seed(5))
    other = digits.render(glyph[:16], torch.Generator().manual_seed(6))
    assert first.shape == (16, 3, 32, 32) and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert 0.0 <= float(first.min()) and float(first.max()) <= 1.0


def test_renders_are_kept_on_disk_and_a_damaged_file_is_rendered_again(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOFT_CACHE", str(tmp_path))
    render_part = digits._render_part
    x, y = digits.rendered.__wrapped__("target")  # renders and stores
    path = digits.render_cache_path("target")
    assert path.is_file()

    def no_render(part):
        raise AssertionError("rendered again although the disk cache holds the renders")

    monkeypatch.setattr(digits, "_render_part", no_render)
    stored_x, stored_y = digits.rendered.__wrapped__("target")
    assert torch.equal(stored_x, x) and torch.equal(stored_y, y)

    path.write_bytes(path.read_bytes()[:1000])  # a file cut short
    monkeypatch.setattr(digits, "_render_part", render_part)
    with pytest.warns(UserWarning, match="damaged"):
        again_x, again_y = digits.rendered.__wrapped__("target")
    assert torch.equal(again_x, x) and torch.equal(again_y, y) and path.stat().st_size > 1000

    blob = bytearray(path.read_bytes())  # bytes overwritten in place, the length kept: a label becomes 4.6e18
    blob[-800:-792] = b"\x3f" * 8
    path.write_bytes(bytes(blob))
    with pytest.warns(UserWarning, match="SHA-256 mismatch"):
        again_x, again_y = digits.rendered.__wrapped__("target")
    assert torch.equal(again_x, x) and torch.equal(again_y, y)


def test_source_and_target_glyphs_are_disjoint_and_complete():
    parts = digits.glyph_parts()
    source, target = set(parts["source"].tolist()), set(parts["target"].tolist())
    assert not source & target and len(source) + len(target) == len(digits.glyphs()[1])


@pytest.mark.parametrize("shift", ["input", "feature", "output"])
def test_split_sizes_are_exact_and_shots_effective(setup, shift):
    family = "feature" if shift == "feature" else "standard"
    classes, (test_k, val_k, train_k) = CLASSES[family], PER_CLASS[family]
    corruption = "frost" if shift == "input" else None
    spec = setup.check(TaskSpec(shift, corruption, shots=classes * 3 + classes - 1, seed=1))
    assert spec.shots == classes * 3  # whole shots per class: what is stored is what is used
    task = setup.task(spec)
    assert (len(task.test), len(task.val), len(task.train)) == (test_k * classes, val_k * classes, 3 * classes)
    assert all(torch.equal(torch.bincount(s.y, minlength=classes), torch.full((classes,), k))
               for s, k in ((task.test, test_k), (task.val, val_k), (task.train, 3)))
    assert test_k * classes >= 1000 and val_k * classes >= 1000 and train_k * classes >= 1000
    assert setup.check(TaskSpec(shift, corruption, shots=10**6)).shots == train_k * classes


def test_output_shift_is_exactly_nine_minus_y(setup):
    _, pool = digits_tasks.source_and_pool("standard")
    lookup = _lookup(pool.x, pool.y)
    task = setup.task(setup.check(TaskSpec("output", shots=100, seed=0)))
    for split in (task.train, task.val, task.test):
        originals = torch.tensor([lookup[row.numpy().tobytes()] for row in split.x.flatten(1)])
        assert torch.equal(split.y, 9 - originals)


def test_feature_shift_uses_unseen_digits_per_superclass(setup):
    target_x, target_y = digits.rendered("target")
    lookup = _lookup(target_x, target_y)
    task = setup.task(setup.check(TaskSpec("feature", shots=50, seed=0)))
    assert task.num_classes == 5 and set(task.source.y.tolist()) == set(range(5))
    for split in (task.train, task.test):  # superclass k = {k, k + 5}: the target holds only k + 5
        seen = torch.tensor([lookup[r.numpy().tobytes()] for r in split.x.flatten(1)])
        assert torch.equal(split.y, seen - 5)


def test_input_shift_corrupts_the_same_images_and_keeps_labels(setup):
    clean = setup.task(setup.check(TaskSpec("output", shots=50, seed=0)))
    noisy = setup.task(setup.check(TaskSpec("input", "gaussian_noise", 5, shots=50, seed=0)))
    assert torch.equal(noisy.test.y, 9 - clean.test.y)  # the same images, in the same order
    assert (noisy.test.x - clean.test.x).abs().mean() > 0.05


def test_source_model_learnt_the_source_and_transfers_to_clean_target_renders(setup):
    model = setup.source_model("output")
    source, pool = digits_tasks.source_and_pool("standard")
    assert not model.training
    held_out = holdout_task(source, 10, PRETRAIN["seed"], PRETRAIN["holdout"]).test  # never trained on
    assert len(held_out) == 1000 and accuracy(model, held_out) > 0.85  # 92.6 % when written; chance: 0.1
    assert accuracy(model, pool.subset(torch.arange(0, len(pool), 7))) > 0.5
