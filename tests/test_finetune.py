"""The per-layer fine-tuning loop, checked against hand computations on a tiny random problem."""
from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autoft_core import evaluation
from autoft_core import finetune as finetune_module
from autoft_core.core.data import Split, TaskData
from autoft_core.core.recipe import Recipe
from autoft_core.device import THREADS_ENV
from autoft_core.errors import AutoFTError, BadArgumentError
from autoft_core.evaluation import Evaluator, clear_accuracy_cache, flat_layer_params
from autoft_core.layers import partition
from autoft_core.models.digits_net import DigitsResNet
from autoft_core.optim import LayerwiseOptimizer
from autoft_core.stages import prefix_cache_pays


def finetune(*args, **kwargs) -> finetune_module.FinetuneResult:
    """The engine's `finetune` on the CPU unless a test names a device: the references here are fp32 CPU
    computations, which CUDA (the default where present, with bf16 autocast) would not match."""
    return finetune_module.finetune(*args, **{"device": "cpu", **kwargs})


def _task(n: int = 32, classes: int = 10, seed: int = 0) -> TaskData:
    g = torch.Generator().manual_seed(seed)
    split = lambda m: Split(torch.rand(m, 3, 32, 32, generator=g),  # noqa: E731
                            torch.randint(0, classes, (m,), generator=g))
    return TaskData(source=split(n), train=split(n), val=split(n), test=split(n), num_classes=classes)


def _model(seed: int = 0) -> DigitsResNet:
    torch.manual_seed(seed)
    return DigitsResNet().eval()


def test_one_sgd_step_moves_each_layer_by_base_lr_times_alpha():
    model, data = _model(), _task()
    layers = partition(model, "module")
    alphas = [0.0, 1.0, 0.5, 0.25, 0.0, 2.0, 1.0, 0.1, 0.0, 0.5, 1.0]
    before = copy.deepcopy(model)
    # Independent gradient: the mean loss over the whole training set, BatchNorm in eval mode.
    loss = F.cross_entropy(before(data.train.x), data.train.y)
    grads = dict(zip([n for n, _ in before.named_parameters()], torch.autograd.grad(loss, list(before.parameters()))))
    cfg = Recipe(epochs=1, lr=0.01, batch_size=len(data.train), optimizer="sgd", momentum=0.0)
    finetune(model, layers, alphas, data, cfg)
    after, start = dict(model.named_parameters()), dict(before.named_parameters())
    for layer, alpha in zip(layers, alphas):
        for name in layer.param_names:
            expected = start[name] - 0.01 * alpha * grads[name]
            torch.testing.assert_close(after[name], expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("schedule", "factors"), [("linear", [1, 2 / 3, 1 / 3]), ("stable-decay", [1, 1, 1])])
def test_schedule_scales_the_rate_over_epochs_times_batches(schedule, factors):
    """3 full-batch SGD epochs (T = 3 steps, one per epoch), by hand: linear steps at lr × 1, 2/3, 1/3;
    stable-decay keeps lr until its last epoch, whose one step decays from the full rate."""
    model, data = _model(), _task()
    layers = partition(model, "module")
    reference = copy.deepcopy(model)
    params = list(reference.parameters())
    for t in range(3):
        grads = torch.autograd.grad(F.cross_entropy(reference(data.train.x), data.train.y), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= 0.01 * factors[t] * g
    cfg = Recipe(epochs=3, lr=0.01, batch_size=len(data.train), optimizer="sgd", momentum=0.0, schedule=schedule)
    finetune(model, layers, [1.0] * len(layers), data, cfg)
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("schedule", "warmup", "factors"), [
    ("constant", 0, [1.0] * 12),
    ("linear", 0, [1 - t / 12 for t in range(12)]),
    ("stable-decay", 0, [1.0] * 8 + [1 - k / 4 for k in range(4)]),
    ("linear", 1, [(t + 1) / 4 for t in range(4)] + [1 - k / 8 for k in range(8)]),
    ("stable-decay", 1, [(t + 1) / 4 for t in range(4)] + [1.0] * 4 + [1 - k / 4 for k in range(4)]),
])
def test_each_steps_rate_factor_follows_the_schedule_over_epochs_times_batches(schedule, warmup, factors, monkeypatch):
    """32 images in batches of 8 for 3 epochs: T = 12 steps, 4 an epoch. By the recipe's help: warm-up
    (t+1)/W over W = warmup × 4 steps, linear 1 − t'/(T−W) after it, stable-decay constant until its last
    epoch's 4 steps, 1 − k/4."""
    seen = []
    rate_factor = LayerwiseOptimizer.rate_factor
    monkeypatch.setattr(LayerwiseOptimizer, "rate_factor", lambda self: seen.append(rate_factor(self)) or seen[-1])
    model, data = _model(), _task()
    layers = partition(model, "module")
    finetune(model, layers, [1.0] * len(layers), data,
             Recipe(epochs=3, lr=1e-3, batch_size=8, schedule=schedule, warmup=warmup))
    assert seen == pytest.approx(factors, abs=1e-12)


def test_frozen_layers_are_bit_for_bit_unchanged_and_get_no_gradient():
    model, data = _model(), _task()
    layers = partition(model, "module")
    alphas = [0.0] * 5 + [1.0] * 6
    frozen_before = [t.clone() for t in flat_layer_params(model, layers)[:5]]
    running_before = model.stem.bn.running_mean.clone()
    cfg = Recipe(epochs=3, lr=1e-2, batch_size=8, weight_decay=1e-3)
    result = finetune(model, layers, alphas, data, cfg)
    for a, b in zip(flat_layer_params(model, layers)[:5], frozen_before):
        assert torch.equal(a, b)
    assert all(p.grad is None for layer in layers[:5] for p in layer.parameters(model))
    assert torch.equal(model.stem.bn.running_mean, running_before)  # BN statistics frozen by default
    assert result.param_change[:5] == [0.0] * 5
    assert all(c > 0 for c in result.param_change[5:])


def test_param_change_is_relative_distance_from_start():
    model, data = _model(), _task()
    layers = partition(model, "block")
    start = [t.clone() for t in flat_layer_params(model, layers)]
    result = finetune(model, layers, [1.0] * len(layers), data, Recipe(epochs=2, lr=1e-2))
    end = flat_layer_params(model, layers)
    expected = [((e - s).norm() / s.norm()).item() for e, s in zip(end, start)]
    assert result.param_change == pytest.approx(expected, rel=1e-5)


def test_bn_statistics_train_only_when_asked():
    model, data = _model(), _task()
    layers = partition(model, "module")
    before = model.stem.bn.running_mean.clone()
    finetune(model, layers, [1.0] * len(layers), data, Recipe(epochs=1, train_bn_stats=True))
    assert not torch.equal(model.stem.bn.running_mean, before)


def test_same_seed_same_numbers_other_seed_other_numbers():
    data = _task()
    runs = []
    for seed in (0, 0, 1):
        model = _model()
        layers = partition(model, "module")
        r = finetune(model, layers, [1.0] * len(layers), data,
                     Recipe(epochs=2, batch_size=8), seed)
        runs.append((r.history[-1]["train_loss"], torch.cat([p.flatten() for p in model.parameters()])))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][1], runs[2][1])


class _Recorder:
    """A reweighter that alternates which half of the network trains, recording its calls."""

    every = "epoch"

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self, model, batch):
        self.calls += 1
        half = [1.0] * (self.n // 2) + [0.0] * (self.n - self.n // 2)
        return half if self.calls % 2 else half[::-1]


def test_reweighter_runs_each_epoch_and_its_multipliers_apply():
    model, data = _model(), _task()
    layers = partition(model, "module")
    hook = _Recorder(len(layers))
    result = finetune(model, layers, [1.0] * len(layers), data, Recipe(epochs=3), reweighter=hook)
    assert hook.calls == 3
    assert [h["multipliers"][0] for h in result.history] == [1.0, 0.0, 1.0]


def test_step_reweighter_is_called_before_every_step():
    model, data = _model(), _task(n=32)
    layers = partition(model, "module")
    hook = _Recorder(len(layers))
    hook.every = "step"
    finetune(model, layers, [1.0] * len(layers), data, Recipe(epochs=2, batch_size=8), reweighter=hook)
    assert hook.calls == 2 * 4


def _acc(model, split) -> float:
    with torch.no_grad():
        return (model(split.x).argmax(1) == split.y).float().mean().item()


def test_best_validation_epoch_and_its_test_accuracy_come_from_the_restored_best_state(monkeypatch):
    monkeypatch.setattr(finetune_module, "spare_cpu_core", lambda device: False)  # `progress` reads the model
    model, data = _model(), _task(n=64)
    layers = partition(model, "module")
    states = {0: copy.deepcopy(model.state_dict())}  # snapshot after each epoch's validation
    val = {0: _acc(model, data.val)}

    def snapshot(epoch, total, stats):
        states[epoch] = copy.deepcopy(model.state_dict())
        val[epoch] = stats["val_acc"]

    r = finetune(model, layers, [1.0] * len(layers), data, Recipe(epochs=4, lr=3e-2, batch_size=16),
                 progress=snapshot)
    best = max(val, key=lambda e: (val[e], -e))  # the first epoch with the highest validation accuracy
    assert r.best_val_epoch == best and r.best_val_acc == pytest.approx(val[best])
    assert r.test_acc == pytest.approx(_acc(model, data.test))  # the model is left in its final state
    probe = _model()
    probe.load_state_dict(states[best])
    assert r.best_val_test_acc == pytest.approx(_acc(probe.eval(), data.test))


@pytest.mark.parametrize("bad", [{"epochs": -1}, {"lr": 0}, {"batch_size": 0}, {"optimizer": "rmsprop"}])
def test_bad_recipe_is_a_clear_error(bad):
    with pytest.raises(BadArgumentError):
        Recipe(**bad)


def test_wrong_number_of_multipliers_is_rejected():
    model, data = _model(), _task()
    with pytest.raises(ValueError, match="multipliers"):
        finetune(model, partition(model), [1.0, 1.0], data, Recipe(epochs=1))


class _Constant:
    """A reweighter that always returns the same multipliers (so the frozen-prefix shortcut is off)."""

    every = "epoch"

    def __init__(self, multipliers: list[float]) -> None:
        self.multipliers = multipliers

    def __call__(self, model, batch):
        return self.multipliers


def test_frozen_prefix_shortcut_gives_the_same_training_as_the_full_forward():
    data = _task()
    alphas = [0.0] * 6 + [1.0] * 5  # stem, stage1 and stage2 (with its shortcut) frozen
    results = []
    for hook in (None, _Constant(alphas)):
        model = _model()
        layers = partition(model, "module")
        r = finetune(model, layers, alphas, data, Recipe(epochs=2, batch_size=8), reweighter=hook)
        results.append((r, torch.cat([p.detach().flatten() for p in model.parameters()])))
    (fast, w_fast), (slow, w_slow) = results
    torch.testing.assert_close(w_fast, w_slow, rtol=1e-4, atol=1e-5)
    assert fast.history[-1]["train_loss"] == pytest.approx(slow.history[-1]["train_loss"], rel=1e-4)
    assert fast.param_change == pytest.approx(slow.param_change, rel=1e-3, abs=1e-7)


def test_the_frozen_prefix_cache_is_used_only_when_it_saves_work_and_fits(monkeypatch):
    passes: list[int] = []  # images per prefix pass
    real = finetune_module._features
    monkeypatch.setattr(finetune_module, "_features", lambda prefix, x, device: passes.append(len(x)) or
                        real(prefix, x, device))
    data, alphas = _task(), [0.0] * 6 + [1.0] * 5
    for epochs, expected in ((1, []), (4, [1, 32, 32, 32])):  # one epoch: the prefix would run as often
        passes.clear()
        model = _model()
        finetune(model, partition(model, "module"), alphas, data, Recipe(epochs=epochs, batch_size=8))
        assert passes == expected
    monkeypatch.setattr(finetune_module, "feature_budget", lambda device: 0)
    passes.clear()
    model = _model()
    finetune(model, partition(model, "module"), alphas, data, Recipe(epochs=4, batch_size=8))
    assert passes == [1]  # measured one image, did not fit


def _shifted_numpy(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """image (C, H, W) moved down by dy and right by dx, edge pixels repeated (NumPy, independent)."""
    _, h, w = image.shape
    limit = max(abs(dy), abs(dx))
    padded = np.pad(image, ((0, 0), (limit, limit), (limit, limit)), mode="edge")
    return padded[:, limit - dy:limit - dy + h, limit - dx:limit - dx + w]


def test_translated_moves_each_image_by_its_own_offset_within_the_limit():
    """Every output image is its input shifted by some (dy, dx) in [-3, 3]² with edges repeated (NumPy);
    the offsets differ between images; the same generator seed gives the same batch."""
    x = torch.rand(16, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    out = finetune_module.translated(x, 3, torch.Generator().manual_seed(5))
    offsets = set()
    for image, moved in zip(x.numpy(), out.numpy()):
        found = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)
                 if np.array_equal(moved, _shifted_numpy(image, dy, dx))]
        assert len(found) == 1
        offsets.add(found[0])
    assert len(offsets) > 4
    torch.testing.assert_close(finetune_module.translated(x, 3, torch.Generator().manual_seed(5)), out)


def test_translate_trains_on_shifted_images_and_never_on_cached_prefix_features():
    """With translate, the frozen stem runs on every training batch, on images that are mostly not the stored
    ones (the frozen-prefix cache, which would shift features instead, is off); without it the prefix
    runs once over the data and never in training."""
    data, alphas = _task(), [0.0] * 6 + [1.0] * 5
    stored = {tuple(image.flatten().tolist()) for image in data.train.x}
    for translate in (0, 2):
        model = _model()
        batches: list[torch.Tensor] = []
        handle = model.stem.register_forward_hook(
            lambda module, inputs, out: batches.append(inputs[0].clone()) if module.training else None)
        finetune(model, partition(model, "module"), alphas, data, Recipe(epochs=4, batch_size=32, translate=translate))
        handle.remove()
        if not translate:
            assert batches == []
            continue
        assert len(batches) == 4 and all(b.shape == data.train.x.shape for b in batches)
        unchanged = sum(tuple(image.flatten().tolist()) in stored for b in batches for image in b)
        assert unchanged < 0.2 * 4 * 32  # an image keeps its place only at offset (0, 0): 1 in 25


def test_translate_on_inputs_that_are_not_images_is_one_clear_error():
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g))
    model = torch.nn.Sequential(torch.nn.Linear(6, 3))
    with pytest.raises(AutoFTError, match="translate=2 shifts image batches .* use translate=0"):
        finetune(model, partition(model, "module"), [1.0], TaskData(split, split, split, split, 3),
                 Recipe(epochs=1, translate=2))


def test_prefix_cache_pays_never_for_one_epoch_and_always_for_many():
    for n_train, n_val, n_test in ((1000, 150, 500), (32, 32, 32), (10, 1000, 10_000)):
        assert not prefix_cache_pays(1, n_train, n_val, n_test)
        decisions = [prefix_cache_pays(e, n_train, n_val, n_test) for e in range(0, 60)]
        assert decisions == sorted(decisions) and decisions[-1]  # once it pays, more epochs pay too


def test_pretrained_accuracy_is_computed_once_per_model_and_task_and_is_the_true_one(monkeypatch):
    clear_accuracy_cache()
    data = _task()
    test_passes = []
    real = evaluation.accuracy
    counted = lambda net, split: test_passes.append(split.x is data.test.x) or real(net, split)  # noqa: E731
    monkeypatch.setattr(finetune_module, "accuracy", counted)
    monkeypatch.setattr(evaluation, "accuracy", counted)  # the passes an `Evaluator` makes, on any thread
    # nothing trains: the best state stays the pretrained one (no extra test pass)
    frozen = [0.0] * len(partition(_model()))
    counts, zero_shots = [], []
    for model in (_model(), _model(), _model(seed=1)):  # the same state twice, then another one
        test_passes.clear()
        r = finetune(model, partition(model, "module"), frozen, data, Recipe(epochs=1))
        counts.append(sum(test_passes))
        zero_shots.append(r.zero_shot_acc)
        assert r.zero_shot_acc == pytest.approx(_acc(model, data.test)) == pytest.approx(r.best_val_test_acc)
    assert counts == [2, 1, 2]  # zero-shot + final test; the second run reuses the zero-shot
    assert zero_shots[0] == zero_shots[1]


def test_a_small_net_runs_on_one_thread_unless_told_and_the_count_is_restored(monkeypatch):
    before = torch.get_num_threads()
    seen: list[int] = []
    record = lambda epoch, total, stats: seen.append(torch.get_num_threads())  # noqa: E731
    try:
        torch.set_num_threads(2)
        for given, expected in ((None, 1), ("2", 2)):
            if given is None:
                monkeypatch.delenv(THREADS_ENV, raising=False)
            else:
                monkeypatch.setenv(THREADS_ENV, given)
            seen.clear()
            model = _model()
            finetune(model, partition(model, "module"), [1.0] * len(partition(model)), _task(), Recipe(epochs=1),
                     progress=record)
            assert seen == [expected] and torch.get_num_threads() == 2
        monkeypatch.setenv(THREADS_ENV, "zero")
        with pytest.raises(BadArgumentError, match=THREADS_ENV):
            finetune(_model(), partition(_model(), "module"), [1.0] * len(partition(_model())), _task(),
                     Recipe(epochs=1))
    finally:
        torch.set_num_threads(before)


def test_evaluating_beside_training_gives_the_same_run_and_runs_on_the_evaluation_thread(monkeypatch):
    data, threads = _task(n=64), []
    real = evaluation.accuracy
    monkeypatch.setattr(evaluation, "accuracy", lambda net, split: threads.append(threading.current_thread().name) or
                        real(net, split))
    runs = {}
    for background in (False, True):
        clear_accuracy_cache()
        threads.clear()
        monkeypatch.setattr(finetune_module, "spare_cpu_core", lambda device: background)
        model = _model()
        layers = partition(model, "module")
        reported = []
        r = finetune(model, layers, [1.0] * len(layers), data, Recipe(epochs=4, lr=3e-2, batch_size=16), seed=3,
                     progress=lambda epoch, total, stats: reported.append((epoch, stats["val_acc"])))
        runs[background] = {k: v for k, v in r.to_dict().items() if k != "seconds"}
        assert reported == [(h["epoch"], h["val_acc"]) for h in r.history]  # every epoch, in order, measured
        assert len(threads) == 6 and all(name.startswith("autoft-eval") == background for name in threads)
    assert runs[True] == runs[False]


def test_a_background_evaluation_measures_the_state_snapshotted_not_the_later_one():
    net, data = _model(), _task(n=64)
    with torch.no_grad():  # labels = the network's own answers: its snapshot scores exactly 1
        splits = [Split(s.x, net(s.x).argmax(1)) for s in (data.val, data.test)]
    g = torch.Generator().manual_seed(0)
    with Evaluator(net, background=True) as evaluator:
        state = evaluator.snapshot()
        pending = [evaluator.submit(split, state) for split in splits]
        with torch.no_grad():
            for p in net.parameters():  # meanwhile the caller changes the network
                p.add_(torch.randn(p.shape, generator=g))
        later = [_acc(net.eval(), split) for split in splits]
        measured = [f.result() for f in pending]  # inside: leaving cancels what has not started
    assert measured == [1.0, 1.0] and max(later) < 1.0


class _Uncopyable(torch.nn.Module):
    """A user's module that deepcopy refuses: it keeps a non-leaf tensor as an attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _model()
        self.cached = torch.ones(1, requires_grad=True) * 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_a_module_that_cannot_be_copied_is_evaluated_at_once_not_refused():
    model, data = _Uncopyable(), _task(n=64)
    with pytest.raises(RuntimeError):
        copy.deepcopy(model)
    with Evaluator(model, background=True) as evaluator:
        assert evaluator.snapshot() is None  # no worker: `net` itself is measured
        assert evaluator.submit(data.val, None).result() == pytest.approx(_acc(model.eval(), data.val))
    layers = partition(model, "module")
    r = finetune(model, layers, [1.0] * len(layers), data, Recipe(epochs=2, lr=3e-2, batch_size=16))
    assert r.status == "ok" and len(r.history) == 2 and all(h["val_acc"] is not None for h in r.history)


def test_a_cloned_state_stays_put_and_loads_back_every_tensor_of_every_dtype():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).to(memory_format=torch.channels_last)
    net.register_buffer("flags", torch.tensor([True, False]))
    net.train()(torch.rand(2, 3, 6, 6))  # running statistics and the int64 batch count move
    expected = {k: v.clone() for k, v in net.state_dict().items()}
    saved = evaluation.clone_state(net)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
        net[1].running_mean.mul_(3.0)
        net[1].num_batches_tracked += 5
        net.flags.logical_not_()
    assert all(torch.equal(saved[k], v) and saved[k].dtype == v.dtype for k, v in expected.items())
    evaluation.load_state(net, saved)
    now = net.state_dict()
    assert all(torch.equal(now[k], v) and now[k].dtype == v.dtype for k, v in expected.items())
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), None])
def test_any_non_finite_weight_of_any_layer_is_seen(bad):
    torch.manual_seed(0)
    groups = [[nn.Parameter(torch.randn(3, 4))],
              [nn.Parameter(torch.randn(5).bfloat16()), nn.Parameter(torch.randn(2))]]
    if bad is not None:
        with torch.no_grad():
            groups[1][1][1] = bad
    assert bool(finetune_module._finite(groups)) == (bad is None)


@pytest.mark.parametrize("poison", [None, float("nan"), float("inf")])
def test_epoch_stats_sum_the_steps_as_numpy_does_and_flag_a_non_finite_loss(poison):
    """EpochStats against float64 NumPy: the loss summed with each step's batch size, the correct count, and the
    non-finite flag raised by one poisoned step's loss (read from the sum, not per step)."""
    rng = np.random.default_rng(0)
    sizes = [16, 16, 16, 7]  # the last batch smaller, as an epoch's is
    losses = rng.uniform(0.1, 3.0, len(sizes))
    if poison is not None:
        losses[2] = poison
    logits = [rng.normal(size=(n, 10)) for n in sizes]
    labels = [rng.integers(0, 10, n) for n in sizes]
    stats = finetune_module.EpochStats()
    for loss, z, y in zip(losses, logits, labels):
        stats.add(torch.tensor(loss, dtype=torch.float32), torch.tensor(z, dtype=torch.float32), torch.tensor(y))
    loss_sum, correct, bad = stats.totals(torch.device("cpu"))
    assert int(correct) == sum(int((z.argmax(1) == y).sum()) for z, y in zip(logits, labels))
    assert bool(bad) == (poison is not None)
    if poison is None:
        assert float(loss_sum) == pytest.approx(float(np.dot(losses.astype(np.float32), sizes)), rel=1e-6)
    empty = finetune_module.EpochStats().totals(torch.device("cpu"))
    assert [float(t) for t in empty] == [0.0, 0.0, 0.0]
