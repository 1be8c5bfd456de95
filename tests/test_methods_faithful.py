"""Like-for-like comparisons and faithful definitions across methods: the `scale` of every scoring method,
equal optimizer-step budgets, LP-FT inside the recipe's epochs, and criticality-random's Kaiming-normal
draws (BatchNorm untouched, local RNG only, the mean over draws against a re-implementation)."""
from __future__ import annotations

import math
import re
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autoft_core.core.data import Split, TaskData
from autoft_core.errors import AutoFTError
from autoft_core.core.recipe import Recipe
from autoft_core.layers import partition
from autoft_core.methods import MethodContext, get_method, method_class, method_names
from autoft_core.methods import _probes
from autoft_core.methods._common import seeded_sample
from autoft_core.methods._scale import scaled

from tiny_nets import tiny_bn_net

pytestmark = pytest.mark.usefixtures("one_thread")
METHODS_DIR = Path(__file__).resolve().parents[1] / "autoft_core" / "methods"
SCORING = [m for m in method_names() if "scale" in method_class(m).params]
EPOCHS, BATCH, TRAIN = 2, 8, 20
CHEAP = {"iterations": 2, "samples": 16, "batches": 1}  # where a method has them: numbers don't matter here


def _data() -> TaskData:
    g = torch.Generator().manual_seed(1)
    split = lambda n, shift=0.0: Split(torch.rand(n, 3, 8, 8, generator=g) + shift,  # noqa: E731
                                       torch.randint(0, 3, (n,), generator=g))
    return TaskData(source=split(40), train=split(TRAIN, 0.3), val=split(12, 0.3), test=split(12, 0.3), num_classes=3)


def _context(method: str, **params: object) -> MethodContext:
    model = tiny_bn_net(mean_spread=0.3)
    cls = method_class(method)
    given = {**{k: v for k, v in CHEAP.items() if k in cls.params}, **params}
    return MethodContext(model=model, layers=partition(model), data=_data(), params=cls.resolve_params(given),
                         recipe=Recipe(epochs=EPOCHS, lr=1e-2, batch_size=BATCH), seed=0,
                         device=torch.device("cpu"))


def test_scales_max_raw_mean_and_the_all_zero_fallback():
    scores = [2.0, 0.5, -1.0, 0.0]
    assert scaled(scores, "max", "m") == ([1.0, 0.25, 0.0, 0.0], False)
    assert scaled(scores, "raw", "m") == ([2.0, 0.5, 0.0, 0.0], False)
    weights, _ = scaled(scores, "mean", "m")
    assert weights == pytest.approx([2.0 / 0.625, 0.5 / 0.625, 0.0, 0.0]) and sum(weights) == pytest.approx(4)
    for scale in ("max", "raw", "mean"):
        assert scaled([0.0, -2.0], scale, "m") == ([1.0, 1.0], True)
    with pytest.raises(AutoFTError):
        scaled([1.0, float("nan")], "max", "m")


@pytest.mark.parametrize("method", SCORING)
def test_every_scoring_method_scales_its_own_scores(method):
    raw = get_method(method).weights(_context(method, scale="raw"))
    top = get_method(method).weights(_context(method, scale="max"))
    assert top.scores == pytest.approx(raw.scores, rel=1e-6)
    positive = [max(s, 0.0) for s in raw.scores]
    assert raw.weights == pytest.approx(positive, rel=1e-12)
    assert top.weights == pytest.approx([s / max(positive) for s in positive], rel=1e-6)


@pytest.mark.parametrize("method", [m for m in method_names() if m != "cross-validation"])
def test_every_method_takes_the_same_number_of_optimizer_steps(method):
    # cross-validation (one run per candidate) belongs to another module's owner; its candidates use
    # the same `finetune` loop as `full`, which this test covers.
    _, result = get_method(method).run(_context(method))
    assert result.steps == EPOCHS * math.ceil(TRAIN / BATCH)


def test_lp_ft_splits_the_recipes_epochs_between_its_phases():
    ctx = _context("lp-ft", lp_share=0.5, lp_lr_factor=4.0)
    ctx.recipe = Recipe(epochs=5, lr=1e-2, batch_size=BATCH)
    chosen, result = get_method("lp-ft").run(ctx)
    assert [h["phase"] for h in result.history] == ["lp", "lp", "ft", "ft", "ft"]
    assert chosen.extras["lp"] == {"epochs": 2, "lr": pytest.approx(4e-2), "weights": [0.0, 0.0, 1.0]}
    assert result.steps == 5 * math.ceil(TRAIN / BATCH)


def _draws_globally(line: str) -> bool:
    """A line that seeds or draws from torch's global RNG (a draw without an explicit generator)."""
    draw = re.search(r"torch\.(rand|randn|randint|randperm|normal|bernoulli)\("
                     r"|nn\.init\.(normal|uniform|trunc_normal|kaiming_\w+|xavier_\w+|orthogonal|sparse)_\(", line)
    return bool(re.search(r"torch\.(manual_seed|seed)\(|\.reset_parameters\(|fork_rng", line)
                or (draw and "generator" not in line))


def test_no_method_draws_from_the_global_rng():
    offenders = [f"{path.name}: {line.strip()}" for path in METHODS_DIR.glob("*.py")
                 for line in path.read_text().splitlines() if _draws_globally(line)]
    assert offenders == []
    assert _draws_globally("torch.manual_seed(3)") and _draws_globally("x = torch.randn(4)")
    assert not _draws_globally("torch.randperm(n, generator=g)")


def _batchnorm_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if ".bn" in k or k.startswith("bn")}


def test_criticality_random_edits_only_conv_and_linear_weights_with_kaiming_normal(monkeypatch):
    ctx = _context("criticality-random", samples=0)
    bn_before = _batchnorm_state(ctx.model)
    seen = []
    original = _probes.LayerProbe._loss

    def spy(probe: _probes.LayerProbe, first: int) -> torch.Tensor:
        bn_now = _batchnorm_state(probe.model)
        assert all(torch.equal(bn_now[k], bn_before[k]) for k in bn_before)  # BatchNorm as pretrained
        seen.append({k: v.clone() for k, v in probe.model.state_dict().items() if not k.startswith("bn")})
        return original(probe, first)

    monkeypatch.setattr(_probes.LayerProbe, "_loss", spy)
    get_method("criticality-random").weights(ctx)
    edited = seen[1:]  # after the base loss: 3 layers × 3 draws
    assert len(edited) == 9
    assert all(float(s["conv1.bias"].abs().max()) == 0.0 for s in edited[:3])
    assert all(float(s["head.bias"].abs().max()) == 0.0 for s in edited[6:])
    weights = torch.cat([s["conv2.weight"].flatten() for s in edited[3:6]])  # 3 draws of 216 weights
    assert float(weights.std()) == pytest.approx(math.sqrt(2 / (4 * 9)), rel=0.15)  # He: 2 / fan_in


def test_criticality_random_is_the_mean_over_draws_of_an_independent_reimplementation():
    draws = 3
    ctx = _context("criticality-random", samples=0, draws=draws)
    got = get_method("criticality-random").weights(ctx)
    model, sample = tiny_bn_net(mean_spread=0.3), seeded_sample(_data().source, 0, 0)
    base = F.cross_entropy(model(sample.x), sample.y).item()
    for index, name in enumerate(["conv1", "conv2", "head"]):
        module = getattr(model, name)
        saved = {k: v.clone() for k, v in module.state_dict().items()}
        generator = torch.Generator().manual_seed(0 * 1_000_003 + index)
        losses = []
        for _ in range(draws):
            with torch.no_grad():
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * math.sqrt(2 / fan_in))
                module.bias.zero_()
                losses.append(F.cross_entropy(model(sample.x), sample.y).item())
            module.load_state_dict(saved)
        assert got.scores[index] == pytest.approx(sum(losses) / draws - base, rel=1e-5, abs=1e-6)


def test_criticality_random_ignores_another_thread_seeding_the_global_rng():
    expected = get_method("criticality-random").weights(_context("criticality-random", samples=0)).scores
    stop = threading.Event()

    def meddle() -> None:
        seed = 0
        while not stop.is_set():
            torch.manual_seed(seed)
            torch.randn(8)
            seed += 1

    contexts = [_context("criticality-random", samples=0) for _ in range(3)]  # the nets are built seeded
    thread = threading.Thread(target=meddle)
    thread.start()
    try:
        runs = [get_method("criticality-random").weights(ctx).scores for ctx in contexts]
    finally:
        stop.set()
        thread.join()
    assert runs == [expected] * 3
