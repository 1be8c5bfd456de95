"""The relative-gradient-norm methods: Auto-RGN against a hand computation, the change variants at zero
shift, exact restoration of the model, the per-epoch reweighter, and the digits setup through the
experiment runner and the command line (the Hessian variants' solver: test_methods_hessian.py)."""
from __future__ import annotations

import dataclasses

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autoft_core.cli import main
from autoft_core.core.data import Split, TaskData
from autoft_core.core.recipe import Recipe
from autoft_core.finetune import finetune
from autoft_core.layers import layer_parameters, partition
from autoft_core.methods import MethodContext, get_method
from autoft_core.methods._gradients import GradientReweighter, layer_norms
from autoft_core.optim import LayerwiseOptimizer
from autoft_core.models.digits_net import DigitsResNet
from autoft_core.setups.digits import FEATURES

from tiny_nets import tiny_bn_net

REPO = Path(__file__).resolve().parent.parent
METHODS = ["auto-rgn", "auto-rgn+hessian", "auto-rgn+change", "auto-rgn+hessian+change"]
BATCHES, BATCH_SIZE = 4, 8


pytestmark = pytest.mark.usefixtures("one_thread")


def _split(n: int, g: torch.Generator) -> Split:
    return Split(torch.rand(n, 3, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g))


def _task(seed: int = 0, same_source: bool = False) -> TaskData:
    g = torch.Generator().manual_seed(seed)
    train = _split(BATCHES * BATCH_SIZE, g)
    source = train if same_source else _split(BATCHES * BATCH_SIZE, g)
    return TaskData(source=source, train=train, val=_split(16, g), test=_split(16, g), num_classes=3)


def _context(method: str, data: TaskData, model: nn.Module | None = None, **params: object) -> MethodContext:
    model = model if model is not None else tiny_bn_net()
    cls = type(get_method(method))
    return MethodContext(model=model, layers=partition(model), data=data,
                         params=cls.resolve_params({"batches": BATCHES, "batch_size": BATCH_SIZE, "scale": "max",
                                                    **params}),
                         recipe=Recipe(epochs=2, batch_size=BATCH_SIZE), seed=0, device=torch.device("cpu"))


def test_auto_rgn_equals_relative_gradient_norm_computed_by_hand():
    data = _task()
    ctx = _context("auto-rgn", data)
    got = get_method("auto-rgn").weights(ctx)
    # Independent: one backward on the whole train split (= the mean of the 4 equal minibatch means).
    model = tiny_bn_net()
    F.cross_entropy(model(data.train.x), data.train.y).backward()
    named = dict(model.named_parameters())
    expected = []
    for layer in ctx.layers:
        grad = math.sqrt(sum(float(named[p].grad.pow(2).sum()) for p in layer.param_names))
        theta = math.sqrt(sum(float(named[p].detach().pow(2).sum()) for p in layer.param_names))
        expected.append(grad / theta)
    assert len(ctx.layers) == 3
    torch.testing.assert_close(torch.tensor(got.scores), torch.tensor(expected), rtol=1e-4, atol=0)
    torch.testing.assert_close(torch.tensor(got.weights), torch.tensor(expected) / max(expected), rtol=1e-4, atol=0)
    assert max(got.weights) == 1.0


@pytest.mark.parametrize("method", ["auto-rgn+change", "auto-rgn+hessian+change"])
def test_change_variants_vanish_when_source_is_target(method):
    data = _task(same_source=True)
    reference = get_method("auto-rgn").weights(_context("auto-rgn", data)).scores
    got = get_method(method).weights(_context(method, data))
    assert max(got.scores) <= 1e-6 * max(reference)
    assert got.weights == [1.0] * 3  # no signal at all: fall back to full fine-tuning
    shifted = get_method(method).weights(_context(method, _task()))
    assert max(shifted.scores) > 1e-3 * max(reference)


@pytest.mark.parametrize("method", METHODS)
def test_model_is_restored_bit_for_bit_and_batchnorm_statistics_do_not_move(method):
    model = tiny_bn_net().train()  # train mode on entry: a careless probe would update running_mean
    for p in model.head.parameters():
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = _context(method, _task(), model)
    out = get_method(method).weights(ctx)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(model.bn1.running_mean, before["bn1.running_mean"])
    assert model.training and not model.head.weight.requires_grad and model.conv1.weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert all(math.isfinite(w) and w >= 0 for w in out.weights) and max(out.weights) == 1.0


@pytest.mark.parametrize("method, every, hook", [("auto-rgn", "epoch", "epoch"), ("auto-rgn", "step", "gradient"),
                                                 ("auto-rgn+change", "step", "step")])
def test_reweighter_rescores_during_fine_tuning(method, every, hook):
    """Each epoch: called with no batch; each step: auto-rgn reads the step's own gradient (no batch, after
    the backward pass), a change variant rescores on the coming minibatch."""
    data = _task()
    ctx = _context(method, data, every=every)
    weighting = get_method(method)
    initial = weighting.weights(ctx)
    reweighter = weighting.reweighter(ctx, initial)
    assert reweighter.every == hook
    calls = []

    def counted(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor] | None) -> list[float]:
        calls.append(batch is None)
        return reweighter(model, batch)

    counted.every = reweighter.every
    cfg = Recipe(epochs=2, lr=0.05, batch_size=BATCH_SIZE)
    result = finetune(ctx.model, ctx.layers, initial.weights, data, cfg, device=ctx.device, reweighter=counted)
    steps = 2 * (len(data.train) // BATCH_SIZE)
    assert calls == {"epoch": [True] * 2, "gradient": [True] * steps, "step": [False] * steps}[hook]
    first, second = (h["multipliers"] for h in result.history)
    assert first != second and max(second) == 1.0
    if every == "epoch":
        assert first == initial.weights  # epoch 1 reuses what `weights` scored


def test_each_step_trains_at_the_relative_norms_of_its_own_gradient():
    """auto-rgn, every=step, one step on the whole training set: the multipliers applied are ‖g_l‖/‖θ_l‖ / max
    of that step's gradient, recomputed here by hand, and the update used them: Adam's first step moves
    every weight with a non-zero gradient by lr × alpha_l (m̂/√v̂ = ±1)."""
    data = _task()
    ctx = _context("auto-rgn", data, every="step")
    method = get_method("auto-rgn")
    model, layers = ctx.model, ctx.layers
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()  # fine-tuning's train mode: BatchNorm statistics frozen
    loss = F.cross_entropy(model(data.train.x), data.train.y)
    grads = dict(zip([n for n, _ in model.named_parameters()], torch.autograd.grad(loss, list(model.parameters()))))
    rgn = []
    for layer in layers:
        g = torch.cat([grads[n].reshape(-1) for n in layer.param_names]).double().norm()
        theta = torch.cat([before[n].reshape(-1) for n in layer.param_names]).double().norm()
        rgn.append(float(g / theta))
    expected = [r / max(rgn) for r in rgn]
    lr = 1e-3
    cfg = Recipe(epochs=1, lr=lr, batch_size=len(data.train))
    result = finetune(model, layers, [1.0] * len(layers), data, cfg, device=ctx.device,
                      reweighter=method.reweighter(ctx, method.weights(ctx)))
    assert result.history[0]["multipliers"] == pytest.approx(expected, rel=1e-5)
    for layer, alpha in zip(layers, expected):
        for name in layer.param_names:
            moved = (dict(model.named_parameters())[name].detach() - before[name]).abs()
            live = grads[name].abs() > 1e-4  # where Adam's eps (1e-8) is under 1e-4 of |g|
            assert moved[live] == pytest.approx(torch.full_like(moved[live], lr * alpha), rel=1e-3)


HOST_READS = ("tolist", "item", "__bool__", "__float__", "__int__", "cpu")


def test_a_step_reweighted_from_its_gradient_reads_nothing_on_the_host(monkeypatch):
    """Scores, multipliers and the update stay tensors (on CUDA no step waits for the host): none of a
    tensor's reads into Python happens between the backward pass and the end of the optimizer step."""
    data = _task()
    ctx = _context("auto-rgn", data, every="step")
    method = get_method("auto-rgn")
    reweighter = method.reweighter(ctx, method.weights(ctx))
    optimizer = LayerwiseOptimizer(layer_parameters(ctx.model, ctx.layers), Recipe(lr=1e-3))
    optimizer.apply([1.0] * len(ctx.layers))
    for _ in range(2):
        optimizer.zero_grad()
        F.cross_entropy(ctx.model(data.train.x), data.train.y).backward()
        with monkeypatch.context() as patched:
            for name in HOST_READS:
                patched.setattr(torch.Tensor, name, lambda *a, name=name, **k: pytest.fail(f"host read: {name}"))
            optimizer.apply(reweighter(ctx.model, None))
            optimizer.step()
    assert max(optimizer.multipliers) == 1.0  # read back once asked, after the steps


def test_non_finite_scores_keep_the_previous_multipliers():
    """A step whose gradient holds a NaN scores NaN: the reweighter keeps the multipliers it gave last (at
    first the run's starting ones), so the rates stay finite and the NaN weights end the run instead."""
    data = _task()
    ctx = _context("auto-rgn", data, every="step")
    reweighter = GradientReweighter(ctx.layers, "max", [0.5] * len(ctx.layers))
    params = [p for group in layer_parameters(ctx.model, ctx.layers) for p in group]
    for p in params:
        p.grad = torch.full_like(p, float("nan"))
    assert reweighter(ctx.model).tolist() == [0.5] * len(ctx.layers)
    for i, p in enumerate(params):
        p.grad = torch.full_like(p, 1.0 + i)
    good = reweighter(ctx.model).tolist()
    assert max(good) == 1.0 and good != [0.5] * len(ctx.layers)
    params[0].grad[0] = float("inf")
    assert reweighter(ctx.model).tolist() == good


def test_epoch_one_reuses_the_weights_only_because_rescoring_would_reproduce_them(monkeypatch):
    """Rescoring the untouched model on call 0's sample gives `weights` again (so reusing it is exact), and
    a whole run with `every=epoch` scores the model once per epoch, not once more."""
    data = _task()
    method = get_method("auto-rgn")
    ctx = _context("auto-rgn", data, every="epoch")
    params = method.resolve_params(ctx.params)
    initial = method.weights(ctx)
    rescored = method._score(ctx.model, ctx.layers, method._probe(ctx, params, 0), params)
    assert rescored.weights == pytest.approx(initial.weights, rel=1e-6)

    scored = []
    real = type(method)._score
    monkeypatch.setattr(type(method), "_score", lambda self, *a: scored.append(1) or real(self, *a))
    epochs = 3
    run_ctx = _context("auto-rgn", data, every="epoch")
    run_ctx = dataclasses.replace(run_ctx, recipe=Recipe(epochs=epochs, lr=0.05, batch_size=BATCH_SIZE))
    method.run(run_ctx)
    assert len(scored) == epochs  # `weights` once, then epochs 2..E


def test_once_means_no_reweighter():
    ctx = _context("auto-rgn", _task(), every="once")
    method = get_method("auto-rgn")
    assert method.reweighter(ctx, method.weights(ctx)) is None
    hessian_ctx = _context("auto-rgn+hessian", _task())
    hessian = get_method("auto-rgn+hessian")
    assert hessian.reweighter(hessian_ctx, hessian.weights(hessian_ctx)) is None


def test_cli_weights_json_and_bad_parameter(capsys):
    out = subprocess.run([sys.executable, "-m", "autoft_core", "weights", "--setup", "digits", "--shift", "output",
                          "--method", "auto-rgn", "--json"], cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    layers = len(partition(DigitsResNet(features=FEATURES)))
    assert got["method"] == "auto-rgn" and max(got["weights"]) == 1.0 and len(got["scores"]) == layers
    assert main(["weights", "--method", "auto-rgn", "--param", "bogus=1"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert main(["weights", "--method", "auto-rgn+hessian", "--param", "iterations=0"]) == 2
    assert main(["weights", "--method", "auto-rgn", "--param", "every=sometimes"]) == 2


def test_layer_norms_are_each_groups_norm_of_its_entries_in_memory_order_bit_for_bit():
    """One concatenation and one multi-tensor norm give exactly one norm of each group's float64 entries laid
    end to end as they lie in memory (a channels-last convolution read as NHWC, not copied), and NumPy's norm
    of them in logical order to rounding; a group without tensors has norm 0."""
    g = torch.Generator().manual_seed(0)
    spread = torch.logspace(-3, 3, 64 * 32 * 9).reshape(64, 32, 3, 3)  # magnitudes where the order shows
    conv = (torch.randn(64, 32, 3, 3, generator=g) * spread).to(memory_format=torch.channels_last)
    groups = [[conv], [conv, torch.randn(8, generator=g)], [], [torch.randn(5, generator=g).bfloat16()],
              [torch.randn(1000, generator=g) * 1e3]]
    norms = layer_norms(groups)
    nhwc = {id(conv): conv.permute(0, 2, 3, 1).reshape(-1)}  # channels-last memory is NHWC
    assert nhwc[id(conv)].data_ptr() == conv.data_ptr()
    assert not torch.equal(torch.linalg.vector_norm(conv.reshape(-1).double()),  # NCHW order: another sum
                           torch.linalg.vector_norm(nhwc[id(conv)].double()))
    for group, got in zip(groups, norms):
        if not group:
            assert got == 0.0
            continue
        in_memory = torch.cat([nhwc.get(id(t), t.reshape(-1)) for t in group]).double()
        assert torch.equal(got, torch.linalg.vector_norm(in_memory))
        logical = torch.cat([t.reshape(-1) for t in group]).double()
        assert got.item() == pytest.approx(float(np.linalg.norm(logical.numpy())), rel=1e-14)
