"""The Hessian variants against dense linear algebra: per-layer curvature blocks built with torch.func in
float64, the damped Newton step (C_l + λ_l I)⁻¹ g_l solved densely, exact Hessian-vector products against
central differences of the per-layer gradient, the solver's diagnostics, and the remembered steps."""
from __future__ import annotations

import copy
import os
import time
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from autoft_core.core.data import Split, TaskData
from autoft_core.core.recipe import Recipe
from autoft_core.errors import AutoFTError
from autoft_core.layers import Layer, partition
from autoft_core.methods import MethodContext, get_method
from autoft_core.methods._common import probe_mode
from autoft_core.methods._curvature import MIN_DAMPING, BlockCurvature, affine_batchnorm, damped_step
from autoft_core.methods import _gradients, _steps_on_disk
from autoft_core.methods._gradients import clear_newton_steps, layer_newton_steps

from tiny_nets import tiny_bn_net

pytestmark = pytest.mark.usefixtures("one_thread")
N = 32
DAMPING = 0.1


@pytest.fixture(autouse=True)
def _no_remembered_steps(monkeypatch, tmp_path):
    """Each test computes its Newton steps itself (they are remembered across calls in the process) and
    keeps them on disk in a folder of its own."""
    clear_newton_steps()
    monkeypatch.setattr(_steps_on_disk, "folder", lambda: tmp_path / "newton_steps")


def _sample(dtype: torch.dtype = torch.float32) -> Split:
    g = torch.Generator().manual_seed(0)
    return Split(torch.rand(N, 3, 8, 8, generator=g).to(dtype), torch.randint(0, 3, (N,), generator=g))


def _layer_function(model: nn.Module, layer: Layer, sample: Split):
    """(θ_l0 flat, logits as a function of θ_l flat) with every other parameter and buffer fixed."""
    named = dict(model.named_parameters())
    shapes = [named[n].shape for n in layer.param_names]
    theta = torch.cat([named[n].detach().reshape(-1) for n in layer.param_names])

    def logits(t: torch.Tensor) -> torch.Tensor:
        pieces, start = {}, 0
        for name, shape in zip(layer.param_names, shapes):
            pieces[name] = t[start:start + shape.numel()].view(shape)
            start += shape.numel()
        return functional_call(model, pieces, (sample.x,))

    return theta, logits


def _dense(model: nn.Module, layer: Layer, sample: Split, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(C_l, g_l) of the mean cross-entropy, densely in the model's dtype."""
    theta, logits = _layer_function(model, layer, sample)
    loss = lambda t: F.cross_entropy(logits(t), sample.y)  # noqa: E731
    grad = torch.func.grad(loss)(theta)
    if kind == "hessian":
        return torch.func.hessian(loss)(theta), grad
    jac = torch.func.jacrev(logits)(theta)  # (N, classes, P)
    p = logits(theta).softmax(-1)
    hz = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    return torch.einsum("ncp,ncd,ndq->pq", jac, hz, jac) / len(sample), grad


def _context(model: nn.Module, data: TaskData, **params: object) -> MethodContext:
    return MethodContext(model=model, layers=partition(model), data=data,
                         params=get_method("auto-rgn+hessian").resolve_params(params),
                         recipe=Recipe(), seed=0, device=torch.device("cpu"))


@pytest.mark.parametrize("kind", ["hessian", "gauss-newton"])
def test_per_layer_step_is_the_dense_damped_newton_step(kind):
    model, sample = tiny_bn_net(), _sample()
    layers = partition(model)
    params = {"curvature": kind, "iterations": 300, "damping": DAMPING}  # iterations ≥ every layer's size
    steps = layer_newton_steps(model, layers, sample, params)
    reference = copy.deepcopy(model).double()
    data = TaskData(sample, sample, sample, sample, 3)
    scores = get_method("auto-rgn+hessian").weights(_context(model, data, batches="all", **params)).scores
    for l, layer in enumerate(layers):
        curvature, grad = _dense(reference, layer, _sample(torch.float64), kind)
        eig = torch.linalg.eigvalsh(curvature)
        lam = DAMPING * float(eig.abs().max()) + max(0.0, -float(eig.min()))
        newton = torch.linalg.solve(curvature + lam * torch.eye(len(grad), dtype=grad.dtype), grad)
        got = steps.steps[l].double()
        assert float((got - newton).norm() / newton.norm()) < 1e-4, layer.name
        assert steps.diagnostics[l]["damping"] == pytest.approx(lam, rel=1e-4)
        assert steps.diagnostics[l]["iterations"] == len(grad)
        theta = torch.cat([p.detach().double().flatten() for p in layer.parameters(reference)])
        assert scores[l] == pytest.approx(float(newton.norm() / theta.norm()), rel=1e-4)
    if kind == "hessian":  # this net's exact blocks are indefinite, which the damping's shift handles
        assert any(d["ritz_min"] < 0 for d in steps.diagnostics)
    else:
        assert all(d["ritz_min"] >= -1e-6 * d["ritz_max"] for d in steps.diagnostics)


def test_exact_hessian_vector_products_match_central_differences_of_the_layer_gradient():
    model, sample = tiny_bn_net().double(), _sample(torch.float64)
    layers = partition(model)
    g = torch.Generator().manual_seed(3)
    with probe_mode(model):
        curvature = BlockCurvature(model, [layer.parameters(model) for layer in layers], sample, "hessian")
        for l, layer in enumerate(layers):
            theta, logits = _layer_function(model, layer, sample)
            grad = torch.func.grad(lambda t: F.cross_entropy(logits(t), sample.y))
            v = torch.randn(theta.numel(), generator=g, dtype=torch.float64)
            v /= v.norm()
            eps = 1e-6  # small enough that no ReLU input crosses 0 (a kink), large against float64 rounding
            differences = (grad(theta + eps * v) - grad(theta - eps * v)) / (2 * eps)
            product = curvature.product(l, v)
            assert float((product - differences).norm() / differences.norm()) < 1e-6, layer.name


def test_truncated_solve_reports_its_true_residual_and_every_layer_gets_the_same_budget():
    model, sample = tiny_bn_net(), _sample()
    layers = partition(model)
    steps = layer_newton_steps(model, layers, sample, {"curvature": "hessian", "iterations": 4, "damping": DAMPING})
    reference = copy.deepcopy(model).double()
    assert [d["iterations"] for d in steps.diagnostics] == [4, 4, 4]
    for l, layer in enumerate(layers):
        curvature, grad = _dense(reference, layer, _sample(torch.float64), "hessian")
        lam = steps.diagnostics[l]["damping"]
        residual = (curvature + lam * torch.eye(len(grad), dtype=grad.dtype)) @ steps.steps[l].double() - grad
        assert steps.diagnostics[l]["residual"] == pytest.approx(float(residual.norm() / grad.norm()),
                                                                 rel=1e-3, abs=1e-6)
        assert steps.diagnostics[l]["curvature_along_grad"] == pytest.approx(
            float(grad @ curvature @ grad / (grad @ grad)), rel=1e-4)


def test_undamped_step_on_positive_definite_curvature_is_the_newton_step_and_zero_damping_is_refused():
    rng = np.random.default_rng(0)
    alpha, beta = rng.uniform(2.0, 3.0, 4), np.append(rng.uniform(0.1, 0.5, 3), 0.2)
    tri = np.diag(alpha) + np.diag(beta[:-1], 1) + np.diag(beta[:-1], -1)  # diagonally dominant: definite
    step = damped_step(alpha, beta, 1.5, 0.0)
    assert step.diagnostics["damping"] == 0.0
    np.testing.assert_allclose(step.coefficients, np.linalg.solve(tri, [1.5, 0, 0, 0]), rtol=1e-12)
    assert damped_step(np.zeros(3), np.zeros(3), 1.5, 0.1).coefficients is None  # no curvature: the gradient
    for method in ("auto-rgn+hessian", "auto-rgn+hessian+change"):
        with pytest.raises(AutoFTError, match="damping"):
            get_method(method).resolve_params({"damping": 0})
        assert get_method(method).resolve_params({"damping": MIN_DAMPING})["damping"] == MIN_DAMPING


def test_gradients_ignore_a_surrounding_autocast():
    data = TaskData(_sample(), _sample(), _sample(), _sample(), 3)
    plain = get_method("auto-rgn+hessian").weights(_context(tiny_bn_net(), data, iterations=3)).scores
    clear_newton_steps()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = get_method("auto-rgn+hessian").weights(_context(tiny_bn_net(), data, iterations=3)).scores
    assert inside == plain


def test_newton_steps_are_remembered_by_content_and_recomputed_when_anything_changes(monkeypatch):
    solves = []
    solve = _gradients.newton_steps
    monkeypatch.setattr(_gradients, "newton_steps", lambda *a, **k: solves.append(1) or solve(*a, **k))
    model, sample = tiny_bn_net(), _sample()
    layers = partition(model)
    params = {"curvature": "hessian", "iterations": 3, "damping": DAMPING}
    first = layer_newton_steps(model, layers, sample, params)
    same = layer_newton_steps(copy.deepcopy(model), layers, Split(sample.x.clone(), sample.y.clone()), params)
    assert same is first and len(solves) == 1  # equal contents: the remembered solution
    layer_newton_steps(model, layers, sample, {**params, "damping": 0.3})
    layer_newton_steps(model, layers, Split(sample.x, (sample.y + 1) % 3), params)
    assert len(solves) == 3
    original = model.conv2.weight.detach().clone()
    with torch.no_grad():
        model.conv2.weight[0, 0, 0, 0] += 1e-3
    moved = layer_newton_steps(model, layers, sample, params)
    assert len(solves) == 4 and not torch.equal(moved.steps[1], first.steps[1])
    with torch.no_grad():
        model.conv2.weight.copy_(original)
    clear_newton_steps()
    again = layer_newton_steps(model, layers, sample, params)
    assert len(solves) == 5 and again is not first  # forgotten: solved again, to the same numbers
    assert all(torch.equal(a, b) for a, b in zip(again.steps, first.steps))


def test_change_variant_shares_the_target_step_with_hessian_and_scores_the_same(monkeypatch):
    source = Split(_sample().x.flip(-1), _sample().y)
    data = TaskData(source, _sample(), _sample(), _sample(), 3)
    params = {"iterations": 3}
    change = get_method("auto-rgn+hessian+change")
    cold = change.weights(_context(tiny_bn_net(), data, **params)).scores
    clear_newton_steps(on_disk=True)
    solves = []
    solve = _gradients.newton_steps
    monkeypatch.setattr(_gradients, "newton_steps", lambda *a, **k: solves.append(1) or solve(*a, **k))
    get_method("auto-rgn+hessian").weights(_context(tiny_bn_net(), data, **params))
    warm = change.weights(_context(tiny_bn_net(), data, **params)).scores
    assert len(solves) == 2  # the target step once, then the source step
    assert warm == cold and max(cold) > 0


def _change_setting() -> tuple[MethodContext, list[int]]:
    """+hessian+change's context on a source unlike the target, and a list counting its solves."""
    source = Split(_sample().x.flip(-1), _sample().y)
    data = TaskData(source, _sample(), _sample(), _sample(), 3)
    return _context(tiny_bn_net(), data, iterations=3), []


def _counting(monkeypatch, solves: list[int]) -> None:
    solve = _gradients.newton_steps
    monkeypatch.setattr(_gradients, "newton_steps", lambda *a, **k: solves.append(1) or solve(*a, **k))


def test_a_new_process_reads_the_source_step_kept_on_disk(monkeypatch):
    ctx, solves = _change_setting()
    _counting(monkeypatch, solves)
    change = get_method("auto-rgn+hessian+change")
    first = change.weights(ctx)
    assert len(solves) == 2 and len(list(_steps_on_disk.folder().glob("*.safetensors"))) == 1  # the source's only
    clear_newton_steps()  # what a new process remembers
    again = change.weights(ctx)
    assert len(solves) == 3  # the target step alone was solved again
    assert again.scores == first.scores and again.extras["per_layer"] == first.extras["per_layer"]
    clear_newton_steps(on_disk=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing kept is no damage: solved again without a warning
        change.weights(ctx)
    assert len(solves) == 5 and len(list(_steps_on_disk.folder().glob("*.safetensors"))) == 1


def test_a_damaged_or_foreign_kept_step_is_solved_again(monkeypatch):
    ctx, solves = _change_setting()
    change = get_method("auto-rgn+hessian+change")
    first = change.weights(ctx).scores
    kept, = _steps_on_disk.folder().glob("*.safetensors")
    kept.write_bytes(kept.read_bytes()[:100])  # cut short
    clear_newton_steps()
    _counting(monkeypatch, solves)
    with pytest.warns(UserWarning, match="damaged"):
        assert change.weights(ctx).scores == first
    assert len(solves) == 2  # the source step too, and rewritten whole:
    clear_newton_steps()
    assert change.weights(ctx).scores == first and len(solves) == 3
    monkeypatch.setattr(_steps_on_disk, "code_version", lambda: "other code")
    clear_newton_steps()
    assert change.weights(ctx).scores == first and len(solves) == 5  # other code never reads this code's step


def test_a_kept_step_with_bytes_overwritten_in_place_is_solved_again(monkeypatch):
    ctx, solves = _change_setting()
    change = get_method("auto-rgn+hessian+change")
    first = change.weights(ctx).scores
    kept, = _steps_on_disk.folder().glob("*.safetensors")
    blob = bytearray(kept.read_bytes())
    blob[-64:-48] = b"G" * 16  # readable, the same length: wrong numbers unless the checksum catches it
    kept.write_bytes(bytes(blob))
    clear_newton_steps()
    _counting(monkeypatch, solves)
    with pytest.warns(UserWarning, match="SHA-256 mismatch"):
        assert change.weights(ctx).scores == first
    assert len(solves) == 2


def test_trimmed_or_forgotten_kept_steps_take_their_check_stamps(monkeypatch):
    monkeypatch.setattr(_steps_on_disk.kept_tensors, "RACY_NS", -10**18)  # stamped as soon as checked
    ctx, _ = _change_setting()
    change = get_method("auto-rgn+hessian+change")
    change.weights(ctx)
    clear_newton_steps()
    change.weights(ctx)  # read from disk: checked, stamped
    kept, = _steps_on_disk.folder().glob("*.safetensors")
    assert sorted(p.name for p in _steps_on_disk.folder().iterdir()) == [kept.name, f"{kept.name}.checked"]
    monkeypatch.setattr(_steps_on_disk, "KEPT_BYTES", 0)
    _steps_on_disk._trim(keep=kept.with_name("other.safetensors"))
    assert not list(_steps_on_disk.folder().iterdir())
    clear_newton_steps()
    change.weights(ctx)
    clear_newton_steps()
    change.weights(ctx)
    _steps_on_disk.forget()
    assert not list(_steps_on_disk.folder().iterdir())


def test_a_cache_that_cannot_be_written_is_a_warning_not_a_failed_run(monkeypatch):
    ctx, _ = _change_setting()
    first = get_method("auto-rgn+hessian+change").weights(ctx).scores
    clear_newton_steps(on_disk=True)

    def read_only(*args, **kwargs):
        raise PermissionError("Operation not permitted")

    monkeypatch.setattr(_steps_on_disk.kept_tensors, "save", read_only)
    with pytest.warns(UserWarning, match="could not keep the Newton step"):
        assert get_method("auto-rgn+hessian+change").weights(ctx).scores == first
    assert not list(_steps_on_disk.folder().glob("*.safetensors"))


def test_only_the_untouched_models_source_step_is_kept(monkeypatch):
    ctx, _ = _change_setting()
    params = get_method("auto-rgn+hessian+change").resolve_params({"iterations": 3, "every": "epoch"})
    ctx = replace(ctx, params=params)
    change = get_method("auto-rgn+hessian+change")
    hook = change.reweighter(ctx, change.weights(ctx))
    with torch.no_grad():
        ctx.model.head.weight.add_(0.1)  # as fine-tuning would
    hook(ctx.model, None)
    hook(ctx.model, None)  # epoch 2 rescored the moved model on both samples
    assert len(list(_steps_on_disk.folder().glob("*.safetensors"))) == 1


def test_the_kept_folder_drops_its_oldest_files_beyond_its_bound(monkeypatch):
    model, sample = tiny_bn_net(), _sample()
    layers = partition(model)
    params = {"curvature": "hessian", "iterations": 2, "damping": DAMPING}
    past = time.time() - 1000  # each file's write time set apart, so "oldest" never rests on a tie
    layer_newton_steps(model, layers, sample, params, keep_on_disk=True)
    written = list(_steps_on_disk.folder().glob("*.safetensors"))
    os.utime(written[0], (past, past))
    monkeypatch.setattr(_steps_on_disk, "KEPT_BYTES", 2 * written[0].stat().st_size)
    for k, damping in enumerate((0.2, 0.3, 0.4), start=1):
        before = set(_steps_on_disk.folder().glob("*.safetensors"))
        layer_newton_steps(model, layers, sample, {**params, "damping": damping}, keep_on_disk=True)
        new, = set(_steps_on_disk.folder().glob("*.safetensors")) - before
        assert set(_steps_on_disk.folder().glob("*.safetensors")) == {written[-1], new}  # the newest two stay
        os.utime(new, (past + k, past + k))
        written.append(new)


def test_affine_batchnorm_computes_the_same_function_and_puts_batchnorm_back(monkeypatch):
    model, sample = tiny_bn_net(), _sample()
    with torch.no_grad():
        model.bn1.weight.uniform_(0.5, 1.5)
        model.bn2.bias.uniform_(-0.2, 0.2)
    expected = model(sample.x)
    calls = []
    native = F.batch_norm
    monkeypatch.setattr(F, "batch_norm", lambda *a, **k: calls.append(1) or native(*a, **k))
    with affine_batchnorm(model):
        affine = model(sample.x)
    assert not calls  # the affine map ran, not BatchNorm
    assert torch.allclose(affine, expected, rtol=1e-5, atol=1e-6)
    model(sample.x)
    assert calls  # BatchNorm's own forward is back
    assert not any("forward" in vars(m) for m in model.modules())


def test_affine_batchnorm_leaves_training_mode_batchnorm_alone():
    model = tiny_bn_net().train()
    with affine_batchnorm(model):
        assert not any("forward" in vars(m) for m in model.modules())
