"""The contract every registered method keeps, checked for each one on the embedded digits setup:
valid weights, determinism, the model left untouched, one stored run, and bad parameters refused
before any data or model is loaded."""
from __future__ import annotations

import math

import pytest
import torch

from autoft_core.cli import main
from autoft_core.config import RunConfig
from autoft_core.core.recipe import Recipe
from autoft_core.errors import BadArgumentError
from autoft_core.experiment import _context, resolve, run_experiment
from autoft_core.methods import _steps_on_disk, get_method, method_class, method_names
from autoft_core.methods._gradients import clear_newton_steps
from autoft_core.setups.digits import DigitsSetup

pytestmark = pytest.mark.usefixtures("one_thread")
RECIPE = Recipe(shots=50, epochs=1)
FAST = {"auto-rgn+hessian": {"iterations": 2}, "auto-rgn+hessian+change": {"iterations": 2}}  # solver: tested elsewhere


def _cfg(method: str, **params: object) -> RunConfig:
    return RunConfig(setup="digits", shift="output", method=method, params={**FAST.get(method, {}), **params},
                     recipe=RECIPE, seed=3)


@pytest.mark.parametrize("method", method_names())
def test_weights_are_valid_deterministic_and_leave_the_model_untouched(method, monkeypatch, tmp_path):
    monkeypatch.setattr(_steps_on_disk, "folder", lambda: tmp_path / "newton_steps")
    cfg = resolve(_cfg(method))
    ctx, layers = _context(cfg, None, "cpu", None, None)
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    first = get_method(method).weights(ctx)
    after = ctx.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert len(first.weights) == len(first.scores) == len(layers)
    assert all(math.isfinite(w) and w >= 0 for w in first.weights) and max(first.weights) > 0
    clear_newton_steps(on_disk=True)  # the Hessian variants solve again, not read back what they remembered
    again = get_method(method).weights(_context(cfg, None, "cpu", None, None)[0])
    assert again.weights == first.weights and again.scores == first.scores


@pytest.mark.parametrize("method", method_names())
def test_one_run_lands_exactly_one_stored_row(method, store):
    record = run_experiment(_cfg(method), store=store, device="cpu")
    assert record["cached"] is False and len(store.frame()) == 1
    assert run_experiment(_cfg(method), store=store, device="cpu")["cached"] is True


def _out_of_bounds(method: str) -> tuple[str, str] | None:
    """A (parameter, value) outside the method's declared bounds, or None when nothing can be."""
    for name, p in method_class(method).params.items():
        if p.minimum is not None:
            return name, str(int(p.minimum) - 1 if isinstance(p.default, int) else p.minimum - 1)
        if p.choices is not None:
            return name, "not-a-choice"
    return None


@pytest.fixture
def no_loading(monkeypatch):
    """Any attempt to build a task or a model fails the test: validation must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError("data or model loaded before the parameters were validated")
    monkeypatch.setattr(DigitsSetup, "task", refuse)
    monkeypatch.setattr(DigitsSetup, "source_model", refuse)


@pytest.mark.parametrize("method", method_names())
def test_bad_parameters_are_refused_before_loading(method, no_loading, store):
    bad = _out_of_bounds(method) or ("no_such_parameter", "1")
    with pytest.raises(BadArgumentError, match=bad[0]):
        run_experiment(_cfg(method, **dict([bad])), store=store, device="cpu")
    assert store.frame().empty


@pytest.mark.parametrize("method, param", [("criticality-random", "topk=-1"), ("surprise", "bins=0"),
                                           ("auto-snr", "samples=-5"), ("lp-ft", "lp_share=-1"),
                                           ("auto-rgn+hessian", "pairs=-1")])
@pytest.mark.parametrize("command", ["weights", "finetune", "sweep"])
def test_cli_refuses_out_of_bounds_parameters_with_exit_2(command, method, param, no_loading, tmp_path, capsys):
    argv = [command, "--store", str(tmp_path / "r.sqlite")]
    if command == "sweep":
        argv += ["--methods", method, "--shifts", "output", "--param", param]
    else:
        argv += ["--method", method, "--param", param]
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and param.split("=")[0] in err
