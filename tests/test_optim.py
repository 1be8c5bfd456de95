"""The layer-wise optimizer (fused kernels, one call per distinct learning rate) against torch.optim with one
param group per layer: the same parameters after the same steps, multipliers changing mid-run included."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autoft_core.core.recipe import Recipe
from autoft_core.optim import LayerwiseOptimizer


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def _layers(net: nn.Sequential) -> list[list[nn.Parameter]]:
    return [list(net[i].parameters()) for i in (0, 2, 4)]


def _reference(layers: list[list[nn.Parameter]], recipe: Recipe) -> torch.optim.Optimizer:
    groups = [{"params": params, "lr": recipe.lr} for params in layers]
    if recipe.optimizer == "adam":
        return torch.optim.Adam(groups, lr=recipe.lr, weight_decay=recipe.weight_decay, foreach=False)
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay,
                           foreach=False)


def _set_reference(opt: torch.optim.Optimizer, layers, recipe: Recipe, multipliers: list[float]) -> None:
    for group, params, alpha in zip(opt.param_groups, layers, multipliers):
        group["lr"] = recipe.lr * alpha
        for p in params:
            p.requires_grad_(alpha > 0)


@pytest.mark.parametrize("recipe", [
    Recipe(lr=0.01, optimizer="adam", weight_decay=0.01),
    Recipe(lr=0.05, optimizer="sgd", momentum=0.9, weight_decay=0.001),
    Recipe(lr=0.05, optimizer="sgd", momentum=0.0),
])
def test_same_parameters_as_torch_optim_with_one_group_per_layer(recipe):
    ours_net, ref_net = _net(), _net()
    ours_layers, ref_layers = _layers(ours_net), _layers(ref_net)
    ours, ref = LayerwiseOptimizer(ours_layers, recipe), _reference(ref_layers, recipe)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g)
    # equal multipliers (one fused call), distinct ones, a layer frozen, then unfrozen (its first step late)
    schedule = [[1.0, 1.0, 1.0]] * 2 + [[0.5, 2.0, 1.0]] * 2 + [[0.0, 1.0, 0.25]] * 2 + [[1.0, 0.0, 3.0]] * 2
    for multipliers in schedule:
        ours.apply(multipliers)
        _set_reference(ref, ref_layers, recipe, multipliers)
        for net, opt in ((ours_net, ours), (ref_net, ref)):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
    for a, b in zip(ours_net.parameters(), ref_net.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_equal_multipliers_share_one_group_and_zero_freezes():
    net = _net()
    opt = LayerwiseOptimizer(_layers(net), Recipe(lr=0.1))
    opt.apply([2.0, 2.0, 2.0])
    assert len(opt.groups) == 1 and opt.groups[0][0] == pytest.approx(0.2)
    opt.apply([0.0, 1.0, 0.0])
    assert [p.requires_grad for p in net.parameters()] == [False, False, True, True, False, False]
    opt.apply([0.0, 0.0, 0.0])
    assert not opt.any_trainable


@pytest.mark.parametrize("bad", [[1.0, -1.0, 1.0], [1.0, float("nan"), 1.0], [float("inf"), 1.0, 1.0], [1.0]])
def test_bad_multipliers_are_rejected(bad):
    with pytest.raises(ValueError, match="multiplier"):
        LayerwiseOptimizer(_layers(_net()), Recipe()).apply(bad)


def test_a_frozen_layer_keeps_its_values_and_state_across_steps():
    net = _net()
    layers = _layers(net)
    opt = LayerwiseOptimizer(layers, Recipe(lr=0.1))
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    opt.apply([0.0, 1.0, 1.0])
    before = [p.detach().clone() for p in layers[0]]
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(layers[0], before))
    assert not any(p in opt.state for p in layers[0])



def test_zero_grad_drops_a_layer_frozen_after_its_backward_too():
    """A layer frozen between a backward pass and the next zero_grad keeps no stale gradient (a reweighter
    reading .grad would otherwise see the old one)."""
    net = _net()
    layers = _layers(net)
    opt = LayerwiseOptimizer(layers, Recipe(lr=0.1))
    opt.apply([1.0, 1.0, 1.0])
    F.cross_entropy(net(torch.randn(8, 6)), torch.randint(0, 3, (8,))).backward()
    opt.apply([0.0, 1.0, 1.0])
    opt.zero_grad()
    assert all(p.grad is None for layer in layers for p in layer)

def _run_against_torch_scheduler(recipe: Recipe, total: int, warmup: int,
                                 scheduler_for: Callable[[torch.optim.Optimizer], Any],
                                 epoch_steps: int = 0) -> tuple[LayerwiseOptimizer, list[float]]:
    """`total` full-batch steps of ours (with `warmup` warm-up steps, `epoch_steps` to an epoch) and of
    torch.optim stepped by the scheduler `scheduler_for` builds; asserts the same weights after; (ours, its
    rate factor at each step)."""
    ours_net, ref_net = _net(), _net()
    ours_layers, ref_layers = _layers(ours_net), _layers(ref_net)
    multipliers = [0.5, 2.0, 1.0]
    ours = LayerwiseOptimizer(ours_layers, recipe, total_steps=total, warmup_steps=warmup, epoch_steps=epoch_steps)
    ours.apply(multipliers)
    ref = _reference(ref_layers, recipe)
    _set_reference(ref, ref_layers, recipe, multipliers)
    scheduler = scheduler_for(ref)
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g)
    factors = []
    for _ in range(total):
        factors.append(ours.rate_factor())
        for net, opt in ((ours_net, ours), (ref_net, ref)):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
        scheduler.step()
    for a, b in zip(ours_net.parameters(), ref_net.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    return ours, factors


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_linear_schedule_matches_torch_linear_lr(optimizer):
    """schedule=linear: step t of T at lr × (1 − t/T), as torch.optim.lr_scheduler.LinearLR(1 → 0 over T)."""
    total = 6
    ours, _ = _run_against_torch_scheduler(
        Recipe(lr=0.05, optimizer=optimizer, schedule="linear"), total, 0,
        lambda ref: torch.optim.lr_scheduler.LinearLR(ref, start_factor=1.0, end_factor=0.0, total_iters=total))
    assert ours.rate_factor() == 0.0  # T steps taken: the schedule has run out


@pytest.mark.parametrize("schedule", ["linear", "constant"])
def test_warmup_then_schedule_matches_torch_schedulers(schedule):
    """warmup=W steps at lr × (t+1)/W, then the schedule over the other T − W steps, as torch's LinearLR
    warm-up (1/W → 1) followed by LinearLR(1 → 0 over T − W) or a constant rate (SequentialLR)."""
    total, warmup = 7, 3
    lr = torch.optim.lr_scheduler

    def scheduler_for(ref: torch.optim.Optimizer) -> lr.LRScheduler:
        after = (lr.LinearLR(ref, start_factor=1.0, end_factor=0.0, total_iters=total - warmup)
                 if schedule == "linear" else lr.ConstantLR(ref, factor=1.0, total_iters=0))
        return lr.SequentialLR(ref, [lr.LinearLR(ref, start_factor=1 / warmup, end_factor=1.0,
                                                 total_iters=warmup - 1), after], milestones=[warmup])

    _, factors = _run_against_torch_scheduler(Recipe(lr=0.05, schedule=schedule), total, warmup, scheduler_for)
    expected_after = [1 - i / (total - warmup) for i in range(total - warmup)] if schedule == "linear" else [1.0] * 4
    assert factors == pytest.approx([1 / 3, 2 / 3, 1.0] + expected_after)


@pytest.mark.parametrize("warmup", [0, 2])
def test_stable_decay_keeps_the_rate_then_decays_over_the_last_epoch_as_torch_schedulers(warmup):
    """schedule=stable-decay, T = 9 steps of 3 per epoch: the (warmed-up) full rate until the last epoch's
    3 steps, which run at lr × (1 − i/3), as torch's SequentialLR of a constant rate then LinearLR(1 → 0
    over 3 steps)."""
    total, epoch = 9, 3
    lr = torch.optim.lr_scheduler

    def scheduler_for(ref: torch.optim.Optimizer) -> lr.LRScheduler:
        phases = [lr.ConstantLR(ref, factor=1.0, total_iters=0),
                  lr.LinearLR(ref, start_factor=1.0, end_factor=0.0, total_iters=epoch)]
        if warmup:
            phases[0] = lr.LinearLR(ref, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup - 1)
        return lr.SequentialLR(ref, phases, milestones=[total - epoch])

    ours, factors = _run_against_torch_scheduler(Recipe(lr=0.05, schedule="stable-decay"), total, warmup,
                                                 scheduler_for, epoch_steps=epoch)
    ramp = [(t + 1) / warmup for t in range(warmup)]
    assert factors == pytest.approx(ramp + [1.0] * (total - epoch - warmup) + [1.0, 2 / 3, 1 / 3])
    assert ours.rate_factor() == 0.0  # T steps taken: the schedule has run out


def test_stable_decay_decays_over_what_is_left_after_warmup_when_that_is_under_an_epoch():
    """Warm-up W of T steps leaves T − W < one epoch: the decay takes those T − W steps, as linear does."""
    net = _net()
    stable = LayerwiseOptimizer(_layers(net), Recipe(lr=0.05, schedule="stable-decay"), total_steps=5,
                                warmup_steps=3, epoch_steps=4)
    linear = LayerwiseOptimizer(_layers(net), Recipe(lr=0.05, schedule="linear"), total_steps=5, warmup_steps=3)
    got = []
    for t in range(5):
        stable.steps_taken = linear.steps_taken = t
        got.append((stable.rate_factor(), linear.rate_factor()))
    assert [a for a, _ in got] == [b for _, b in got] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 0.5])


def test_constant_schedule_ignores_the_step_count():
    net = _net()
    opt = LayerwiseOptimizer(_layers(net), Recipe(lr=0.05), total_steps=3)
    opt.steps_taken = 2
    assert opt.rate_factor() == 1.0


@pytest.mark.parametrize("recipe", [
    Recipe(lr=0.01, optimizer="adam", weight_decay=0.01, schedule="linear"),
    Recipe(lr=0.05, optimizer="sgd", momentum=0.9, weight_decay=0.001),
    Recipe(lr=0.05, optimizer="sgd", momentum=0.0, schedule="linear"),
])
def test_multipliers_as_a_tensor_give_the_float_path_bit_for_bit(recipe):
    """A reweighter's float64 multiplier tensor (rates kept on the device, one fused call per layer) moves
    the parameters exactly as the same multipliers given as floats, under a decaying schedule too, and the
    multipliers read back are the tensor's. A zero multiplier in a tensor leaves its layer where it is."""
    total = 6
    runs = []
    for as_tensor in (False, True):
        net = _net()
        layers = _layers(net)
        opt = LayerwiseOptimizer(layers, recipe, total_steps=total + 1)  # a last step at a non-zero rate
        opt.apply([1.0, 1.0, 1.0])
        g = torch.Generator().manual_seed(3)
        x, y = torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g)
        for t in range(total):
            multipliers = [0.3 + 0.1 * t, 1.0, 0.7 / (t + 1)]
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.apply(torch.tensor(multipliers, dtype=torch.float64) if as_tensor else multipliers)
            opt.step()
        assert opt.multipliers == multipliers
        runs.append([p.detach().clone() for p in net.parameters()])
        if as_tensor:
            opt.apply(torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64))
            opt.step()
            assert all(torch.equal(p, q) for p, q in zip(layers[2], runs[-1][4:]))
            assert not torch.equal(layers[0][0], runs[-1][0])
    assert all(torch.equal(a, b) for a, b in zip(*runs))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_step_without_gradients_moves_nothing(optimizer):
    """No trainable parameter has a gradient (no backward pass yet): the step changes no weight and makes no
    state, whether the rates came as floats or as a tensor."""
    net = _net()
    before = [p.detach().clone() for p in net.parameters()]
    opt = LayerwiseOptimizer(_layers(net), Recipe(lr=0.1, optimizer=optimizer))
    for multipliers in ([1.0, 0.5, 1.0], torch.tensor([1.0, 0.5, 1.0], dtype=torch.float64)):
        opt.apply(multipliers)
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before)) and not opt.state
