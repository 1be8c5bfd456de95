"""Layerwise Surprise, surprise difference and Auto-SNR: checked against NumPy / autograd references
and on digits."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autoft_core.core.data import TaskData
from autoft_core.core.recipe import Recipe
from autoft_core.layers import partition
from autoft_core.models.digits_net import DigitsResNet
from autoft_core.methods import MethodContext, get_method
from autoft_core.methods import _activations as activations, auto_snr
from autoft_core.methods._activations import bin_counts, kl_divergence, layerwise_surprise, read_points
from autoft_core.methods.surprise_diff import surprise_increase
from autoft_core.setups import TaskSpec, get_setup

METHODS = ("surprise", "surprise-diff", "auto-snr")
FEW = {"surprise": 128, "surprise-diff": 128, "auto-snr": 32}  # samples where the numbers themselves don't matter
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits():
    return get_setup("digits")


def _context(method: str, model: nn.Module, data: TaskData, granularity: str = "module",
             **params: object) -> MethodContext:
    return MethodContext(model=model, layers=partition(model, granularity), data=data,
                         params=get_method(method).resolve_params(params),
                         recipe=Recipe(), seed=0, device=torch.device("cpu"))


def test_read_points_are_post_activation_outputs_and_block_outputs_after_the_add():
    model = DigitsResNet()
    module_points = dict(zip([layer.name for layer in partition(model)], read_points(model, partition(model))))
    assert module_points["stem.conv"] == (model.stem, False)  # conv-bn-relu Sequential: already rectified
    assert module_points["stage2.conv1"] == (model.stage2.bn1, True)  # its BatchNorm, then ReLU
    assert module_points["stage1.conv2"] == (model.stage1, False)  # last main-path conv: the block output
    assert module_points["stage2.conv2"] == (model.stage2, False)
    assert module_points["stage2.shortcut.conv"] == (model.stage2.shortcut, False)  # its branch, before the add
    assert module_points["expand.conv"] == (model.expand, False)  # the last stage block's widening
    assert module_points["head"] == (model.head, False)  # logits
    blocks = read_points(model, partition(model, "block"))
    assert blocks == [(model.stage1, False), (model.stage2, False), (model.expand, False), (model.head, False)]


@pytest.mark.parametrize("unit", ["channel", "flat"])
@pytest.mark.parametrize("granularity", ["module", "block"])
def test_surprise_is_zero_on_identical_data_and_falls_back_to_ones(digits, unit, granularity):
    data = digits.task(TaskSpec("output"))
    same = TaskData(source=data.source, train=data.source, val=data.val, test=data.test, num_classes=10)
    out = get_method("surprise").weights(_context("surprise", digits.source_model("output"), same, granularity,
                                                  unit=unit, samples=256))
    assert all(abs(s) <= 1e-6 for s in out.scores)
    assert out.weights == [1.0] * len(out.scores) and out.extras["all_zero_fallback"]


def test_surprise_grows_with_corruption_severity(digits):
    model = digits.source_model("input")
    totals = []
    for severity in (1, 3, 5):
        data = digits.task(TaskSpec("input", "gaussian_noise", severity))
        totals.append(sum(get_method("surprise").weights(_context("surprise", model, data)).scores))
    assert totals[0] < totals[1] < totals[2], totals


def _reference_kl(target: np.ndarray, source: np.ndarray, bins: int, pseudocount: float) -> tuple[np.ndarray, ...]:
    """Per-unit numpy histograms over the source range (target clipped into it) and their KL."""
    counts_t, counts_s, kls = [], [], []
    for u in range(source.shape[1]):
        s, t = source[:, u].ravel(), target[:, u].ravel()
        lo, hi = s.min(), s.max()
        hs = np.histogram(s, bins=bins, range=(lo, hi))[0]
        ht = np.histogram(np.clip(t, lo, hi), bins=bins, range=(lo, hi))[0]
        p = (ht / ht.sum() + pseudocount) / (1 + bins * pseudocount)
        q = (hs / hs.sum() + pseudocount) / (1 + bins * pseudocount)
        counts_t.append(ht), counts_s.append(hs), kls.append(float(np.sum(p * np.log(p / q))))
    return np.array(counts_t), np.array(counts_s), np.array(kls)


def test_vectorised_histogram_kl_matches_per_unit_numpy_loop():
    g = torch.Generator().manual_seed(0)
    source = torch.randn(200, 12, 9, generator=g, dtype=torch.float64) * torch.linspace(0.5, 3, 12).view(1, -1, 1)
    target = torch.randn(150, 12, 9, generator=g, dtype=torch.float64) * 1.5 + 0.7
    target[:, 3] = torch.relu(target[:, 3])  # a rectified unit: many values on one edge
    lo, hi = source.amin(dim=(0, 2)), source.amax(dim=(0, 2))
    counts_t, counts_s = bin_counts(target, lo, hi, 8), bin_counts(source, lo, hi, 8)
    ref_t, ref_s, ref_kl = _reference_kl(target.numpy(), source.numpy(), 8, 1e-3)
    np.testing.assert_array_equal(counts_t.numpy(), ref_t)
    np.testing.assert_array_equal(counts_s.numpy(), ref_s)
    np.testing.assert_allclose(kl_divergence(counts_t, counts_s, 1e-3).numpy(), ref_kl, rtol=1e-10)


def _numpy_histogram(values: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    """8 equal-width bins over [lo, hi], outside values clamped into the edge bins; a constant unit
    (lo == hi) puts values <= lo in the first bin and the rest in the last (the documented rule)."""
    if lo == hi:
        counts = np.zeros(bins, dtype=np.int64)
        counts[0], counts[-1] = np.sum(values <= lo), np.sum(values > lo)
        return counts
    return np.histogram(np.clip(values, lo, hi), bins=bins, range=(lo, hi))[0]


def _numpy_kl(target: np.ndarray, source: np.ndarray, lo: np.ndarray, hi: np.ndarray, eps: float) -> np.ndarray:
    """Per-dimension KL(target ‖ source) of (N, D) activations, histograms smoothed by eps per bin."""
    out = []
    for d in range(source.shape[1]):
        p, q = (_numpy_histogram(v[:, d], lo[d], hi[d], 8) for v in (target, source))
        p, q = ((c / c.sum() + eps) / (1 + 8 * eps) for c in (p, q))
        out.append(np.sum(p * np.log(p / q)))
    return np.array(out)


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_surprise_and_noise_floor_equal_a_numpy_per_dimension_histogram_kl(reduce):
    model = _tiny_model()
    g = torch.Generator().manual_seed(5)
    source, target = torch.rand(101, 3, 6, 6, generator=g), torch.rand(80, 3, 6, 6, generator=g) * 1.5 + 0.2
    got = layerwise_surprise(model, partition(model), source, target, reduce=reduce)
    with torch.no_grad():  # layer 1: the conv's BatchNorm output, rectified; layer 2: the logits
        outputs = [lambda x: torch.relu(model[1](model[0](x))).flatten(1), model]
        for layer, output in enumerate(outputs):
            src, tgt = output(source).double().numpy(), output(target).double().numpy()
            lo, hi = src.min(0), src.max(0)
            kl = _numpy_kl(tgt, src, lo, hi, 1e-3)
            floor = _numpy_kl(src[50:], src[:50], lo, hi, 1e-3)
            combine = np.sum if reduce == "sum" else np.mean
            assert got.scores[layer] == pytest.approx(combine(kl), rel=1e-9)
            assert got.noise_floor[layer] == pytest.approx(combine(floor), rel=1e-9)
    assert src.shape[1] == 3 and len(got.scores) == 2


def test_streaming_fallback_for_large_source_activations_gives_the_same_surprise(monkeypatch):
    model = _tiny_model()
    g = torch.Generator().manual_seed(6)
    source, target = torch.rand(300, 3, 6, 6, generator=g), torch.rand(90, 3, 6, 6, generator=g) + 0.1
    held = layerwise_surprise(model, partition(model), source, target)
    monkeypatch.setattr(activations, "SOURCE_BUDGET", 0)  # too large to hold: a range pass, then a count pass
    monkeypatch.setattr(activations, "CHUNK", 64)  # and ranges merged over several chunks
    streamed = layerwise_surprise(model, partition(model), source, target)
    assert streamed == held


def test_constant_source_unit_sends_other_target_values_to_an_end_bin():
    values = torch.tensor([[[0.0, 0.0, 2.0, -1.0]]])
    counts = bin_counts(values, torch.zeros(1), torch.zeros(1), 8)
    assert counts.tolist() == [[3, 0, 0, 0, 0, 0, 0, 1]]


def test_surprise_diff_is_the_positive_increase_of_surprise(digits):
    data = digits.task(TaskSpec("input", "gaussian_noise", 3))
    model = digits.source_model("input")
    surprise = get_method("surprise").weights(_context("surprise", model, data, samples=256)).scores
    diff = get_method("surprise-diff").weights(_context("surprise-diff", model, data, samples=256))
    expected = [max(0.0, s - prev) for prev, s in zip([0.0, *surprise[:-1]], surprise)]
    assert diff.scores == pytest.approx(expected, abs=1e-12)
    assert diff.extras["surprise"] == pytest.approx(surprise, abs=1e-12)
    assert surprise_increase([1.0, 3.0, 2.0, 2.5]) == [1.0, 2.0, 0.0, 0.5]
    assert sum(diff.weights) == pytest.approx(len(diff.weights))  # default scale: mean multiplier 1


def _tiny_model() -> nn.Module:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3))
    model[1].running_mean.uniform_(-0.5, 0.5)
    model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_snr_from_vmap_matches_a_loop_of_autograd_gradients(monkeypatch):
    monkeypatch.setattr(auto_snr, "MAX_CHUNK", 5)  # 12 examples: chunks of 5, 5, 2
    model, g = _tiny_model(), torch.Generator().manual_seed(2)
    x, y = torch.randn(12, 3, 6, 6, generator=g), torch.randint(0, 3, (12,), generator=g)
    layers = partition(model)
    grads = {n: [] for n, _ in model.named_parameters()}
    for i in range(len(x)):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        for n, p in model.named_parameters():
            grads[n].append(p.grad.double().clone())
    expected = []
    for layer in layers:
        stacked = [torch.stack(grads[n]) for n in layer.param_names]
        snr = torch.cat([(g.mean(0).square() / (g.var(0) + 1e-20)).flatten() for g in stacked])
        expected.append(float(snr.mean()))
    model.zero_grad(set_to_none=True)
    got = auto_snr.gradient_snr(model, layers, x, y)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_model_restored_bit_for_bit(digits, method):
    data = digits.task(TaskSpec("input", "gaussian_noise", 5))
    model = digits.source_model("input").train()  # train mode: the methods' eval() must be undone
    before = {k: v.clone() for k, v in model.state_dict().items()}
    get_method(method).weights(_context(method, model, data, samples=FEW[method]))
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert model.training and all(p.requires_grad and p.grad is None for p in model.parameters())


def test_cli_weights_json():
    done = subprocess.run([sys.executable, "-m", "autoft_core", "weights", "--setup", "digits", "--shift", "output",
                           "--method", "surprise", "--json", "--device", "cpu"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    out = json.loads(done.stdout)
    assert out["method"] == "surprise" and len(out["weights"]) == len(out["layers"])
    assert sum(out["weights"]) == pytest.approx(len(out["weights"]))  # default scale: mean multiplier 1
