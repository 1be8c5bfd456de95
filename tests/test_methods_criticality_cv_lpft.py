"""Module criticality (identity / random), cross-validation (surgical fine-tuning) and LP-FT."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
from collections import OrderedDict

import pytest
import torch
from torch import nn

from autoft_core.cli import main
from autoft_core.config import RunConfig
from autoft_core.core.data import Split, TaskData
from autoft_core.evaluation import accuracy, flat_layer_params
from autoft_core.experiment import load_task, resolve
from autoft_core.core.recipe import Recipe, bounds
from autoft_core.layers import partition
from autoft_core.methods import MethodContext, get_method
from autoft_core.methods._scale import scaled
from autoft_core.methods.criticality import _finite, top_k
from autoft_core.methods.cross_validation import final_val_acc
from autoft_core.methods.surgical import block_of_layers

METHODS = ("criticality-identity", "criticality-random", "cross-validation", "lp-ft")


pytestmark = pytest.mark.usefixtures("one_thread")


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    now = model.state_dict()
    assert now.keys() == state.keys()
    assert all(torch.equal(now[k], state[k]) for k in state)


def _digits_ctx(method: str, **params: object) -> MethodContext:
    """A CPU context on the digits output-shift task with the pretrained source model."""
    cfg = resolve(RunConfig(method=method, params=params, recipe=Recipe(epochs=1)))
    setup, data = load_task(cfg)
    model = setup.source_model(cfg.shift)
    return MethodContext(model=model, layers=partition(model, "module"), data=data, params=dict(cfg.params),
                         recipe=cfg.recipe, seed=cfg.seed, device=torch.device("cpu"))


class _TinyNet(nn.Module):
    """conv+bn -> 1x1 conv that is already the identity -> pool -> linear already eye -> head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3, padding=1), bn=nn.BatchNorm2d(4),
                                                  relu=nn.ReLU(), same=nn.Conv2d(4, 4, 1, bias=False)))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.eye = nn.Linear(4, 4)
        self.head = nn.Linear(4, 3)
        with torch.no_grad():
            nn.init.dirac_(self.features.same.weight)
            nn.init.eye_(self.eye.weight)
            self.eye.bias.zero_()
            self.features.bn.running_mean.uniform_(-0.5, 0.5)
            self.features.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.eye(self.pool(self.features(x))))


def _tiny_ctx(method: str, epochs: int = 1, **params: object) -> MethodContext:
    g = torch.Generator().manual_seed(0)
    split = lambda n: Split(torch.rand(n, 3, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g))  # noqa: E731
    model = _TinyNet()
    return MethodContext(model=model, layers=partition(model, "module"),
                         data=TaskData(split(64), split(32), split(32), split(32), num_classes=3),
                         params=get_method(method).resolve_params(params),
                         recipe=Recipe(epochs=epochs, lr=1e-2, batch_size=16), seed=0,
                         device=torch.device("cpu"))


def test_identity_criticality_is_zero_for_an_identity_layer_and_model_is_restored():
    ctx = _tiny_ctx("criticality-identity")
    names = [layer.name for layer in ctx.layers]
    assert names == ["features.conv", "features.same", "eye", "head"]
    ctx.model.train()
    ctx.model.head.weight.requires_grad_(False)
    before = _state(ctx.model)
    out = get_method("criticality-identity").weights(ctx)
    _assert_same_state(ctx.model, before)
    assert ctx.model.training and not ctx.model.head.weight.requires_grad
    assert out.scores[1] == 0.0 and out.scores[2] == 0.0
    assert out.scores[0] != 0.0 and out.extras["losses"][1] == out.extras["base_loss"]


def test_criticality_probes_ignore_a_surrounding_autocast():
    """The probes are fp32 whatever the caller's autocast (on a GPU the run's own is bf16)."""
    ctx = _tiny_ctx("criticality-identity")
    plain = get_method("criticality-identity").weights(ctx)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = get_method("criticality-identity").weights(ctx)
    assert inside.scores == plain.scores and inside.extras["base_loss"] == plain.extras["base_loss"]


@pytest.mark.parametrize("scale", ["mean", "max"])
def test_layers_whose_loss_blew_up_share_the_budget_instead_of_freezing_the_network(scale):
    big = sys.float_info.max / 4  # the largest double over the layer count (the docstring's rule)
    scores = _finite([math.inf, math.nan, 0.5, 0.2])
    assert scores == [big, big, 0.5, 0.2]
    weights, fallback = scaled(top_k(scores, 0), scale, "criticality-identity")
    assert not fallback and weights[0] == weights[1] > 0 and all(math.isfinite(w) for w in weights)
    assert weights[2] > 0 and weights[2] / weights[0] == pytest.approx(0.5 / big, rel=1e-9, abs=0)
    assert weights[3] / weights[2] == pytest.approx(0.2 / 0.5, rel=1e-9)  # the finite scores keep their ratio
    if scale == "mean":
        assert sum(weights) == pytest.approx(len(weights))  # the multipliers still average 1


def test_random_criticality_is_positive_for_trained_layers_top_k_keeps_k_and_restores():
    ctx = _digits_ctx("criticality-random", topk=3, samples=128, scale="max")
    before = _state(ctx.model)
    out = get_method("criticality-random").weights(ctx)
    _assert_same_state(ctx.model, before)
    assert all(s > 0 for s in out.scores)
    assert out.extras["probe_data"] == "source" and out.extras["samples"] == 128
    kept = [i for i, w in enumerate(out.weights) if w > 0]
    assert kept == sorted(sorted(range(len(out.scores)), key=lambda i: -out.scores[i])[:3])
    assert out.weights == pytest.approx([s / max(out.scores) if i in kept else 0.0 for i, s in enumerate(out.scores)])


def test_partial_epochs_probe_target_and_restore_the_model_exactly():
    ctx = _tiny_ctx("criticality-identity", partial_epochs=2, samples=20)
    ctx.model.eval()
    before = _state(ctx.model)
    out = get_method("criticality-identity").weights(ctx)
    _assert_same_state(ctx.model, before)
    assert out.extras["probe_data"] == "target train" and out.extras["samples"] == 20
    assert all(math.isfinite(s) for s in out.scores) and not ctx.model.training


def test_cross_validation_picks_best_val_block_one_hot_and_leaves_the_winner():
    ctx = _tiny_ctx("cross-validation", epochs=2)
    initial = copy.deepcopy(ctx.model)
    chosen, result = get_method("cross-validation").run(ctx)
    rows = chosen.extras["candidates"]
    blocks = partition(initial, "block")
    assert [r["name"] for r in rows] == [b.name for b in blocks] + ["all"]
    winner = next(r for r in rows if r["val_acc"] == max(r["val_acc"] for r in rows))  # first of the best
    assert chosen.extras["chosen"] == winner["name"]
    assert final_val_acc(result) == winner["val_acc"] and result.test_acc == winner["test_acc"]
    owner = block_of_layers(ctx.layers, blocks)
    if winner["name"] == "all":
        assert chosen.weights == [1.0] * len(ctx.layers)
    else:
        b = [blk.name for blk in blocks].index(winner["name"])
        assert chosen.weights == [1.0 if o == b else 0.0 for o in owner]
    moved = [not torch.equal(a, c) for a, c in zip(flat_layer_params(ctx.model, ctx.layers),
                                                     flat_layer_params(initial, ctx.layers))]
    assert moved == [w > 0 for w in chosen.weights]


def test_cross_validation_ties_go_to_the_earliest_block():
    ctx = _tiny_ctx("cross-validation", epochs=0)
    before = _state(ctx.model)
    out = get_method("cross-validation").weights(ctx)  # no training: every candidate ties
    _assert_same_state(ctx.model, before)
    assert len({r["val_acc"] for r in out.extras["candidates"]}) == 1
    assert out.extras["chosen"] == "features" and out.weights == [1.0, 1.0, 0.0, 0.0]


def test_lp_ft_probe_phase_changes_only_the_head():
    ctx = _tiny_ctx("lp-ft", epochs=2, lp_share=1.0)
    _, result = get_method("lp-ft").run(ctx)
    assert [h["phase"] for h in result.history] == ["lp", "lp"]
    assert result.param_change[:-1] == [0.0] * (len(ctx.layers) - 1) and result.param_change[-1] > 0


def test_lp_ft_reports_original_zero_shot_and_both_phases():
    ctx = _tiny_ctx("lp-ft", epochs=3, lp_share=0.7)
    zero_shot = accuracy(ctx.model, ctx.data.test)
    chosen, result = get_method("lp-ft").run(ctx)
    assert result.zero_shot_acc == zero_shot
    assert [(h["epoch"], h["phase"]) for h in result.history] == [(1, "lp"), (2, "lp"), (3, "ft")]
    assert chosen.weights == [1.0] * len(ctx.layers) and chosen.extras["lp"]["lr"] == pytest.approx(0.1)
    assert all(c > 0 for c in result.param_change)


@pytest.mark.parametrize("factor, lr, end", [(1e-12, 1e-2, "minimum"), (1e6, 10.0, "maximum")])
def test_lp_ft_probe_lr_stays_within_the_recipes_bounds_at_either_end_of_its_factor(factor, lr, end):
    limit = getattr(bounds("lr"), end)
    ctx = dataclasses.replace(_tiny_ctx("lp-ft", epochs=2, lp_share=0.5, lp_lr_factor=factor),
                              recipe=Recipe(epochs=2, lr=lr, batch_size=16))
    assert (factor * lr < limit) if end == "minimum" else (factor * lr > limit)  # the factor alone leaves them
    assert get_method("lp-ft").weights(ctx).extras["lp"]["lr"] == limit


def test_cli_topk_and_bad_topk(capsys):
    assert main(["weights", "--method", "criticality-random", "--param", "topk=2", "--json", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert sum(w > 0 for w in json.loads(out)["weights"]) == 2
    assert main(["weights", "--method", "criticality-random", "--param", "topk=x", "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "topk" in err[0]
