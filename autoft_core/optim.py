"""Adam and SGD with one learning rate per layer (base lr × alpha_l), stepped by torch's fused kernels.

Per-layer rates as one torch.optim param group per layer cost a Python pass and a kernel launch per
group each step; here the parameters sharing a rate share one fused call, so full fine-tuning (all
alpha equal) is a single `torch._fused_adam_` call per step. The update is torch.optim.Adam's /
SGD's exactly (per-parameter step counts, L2 weight decay, momentum buffers created on a parameter's
first step), and importing it does not pull in torch._dynamo as constructing torch.optim optimizers
does (about 1.5 s of start-up). Multipliers given as a tensor (a reweighter's, recomputed every step) stay
where they lie: each layer's fused call takes its rate as a 0-d tensor (float64 on the CPU, the same
update as a Python float; float32 on CUDA, what the fused CUDA kernels read), so a CUDA step never waits
for the host to read its rates.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .core.recipe import Recipe

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


class LayerwiseOptimizer:
    """The recipe's optimizer over every layer's parameters; `apply` sets each layer's multiplier (0 freezes
    it: requires_grad off, so no weight gradient is computed)."""

    def __init__(self, layer_params: Sequence[Sequence[nn.Parameter]], recipe: Recipe, total_steps: int = 0,
                 warmup_steps: int = 0, epoch_steps: int = 0) -> None:
        self.recipe, self.total_steps, self.steps_taken = recipe, total_steps, 0
        self.warmup_steps, self.epoch_steps = warmup_steps, epoch_steps
        self.layer_params = [list(params) for params in layer_params]
        self._multipliers: list[float] | torch.Tensor = []
        self.state: dict[nn.Parameter, dict[str, torch.Tensor]] = {}
        self.groups: list[tuple[float, list[nn.Parameter]]] = []  # (lr, parameters), one fused call each
        self.rates: torch.Tensor | None = None  # per-layer rates on the device, when set from a tensor

    def apply(self, multipliers: Sequence[float] | torch.Tensor) -> None:
        """Layer l trains at recipe.lr × multipliers[l]; multipliers must be finite and non-negative. A float64
        tensor is neither read on the host nor checked (its maker keeps it finite): the layers keep their
        requires_grad (a zero multiplier is a zero rate)."""
        if len(multipliers) != len(self.layer_params):
            raise ValueError(f"{len(multipliers)} multipliers for {len(self.layer_params)} layers")
        if isinstance(multipliers, torch.Tensor):
            self._multipliers, self.rates = multipliers, self.recipe.lr * multipliers
            return
        self.rates = None
        values = [float(a) for a in multipliers]
        for alpha in values:
            if not alpha >= 0 or alpha == float("inf"):
                raise ValueError(f"multiplier {alpha} is not a finite non-negative number")
        by_rate: dict[float, list[nn.Parameter]] = {}
        for params, alpha in zip(self.layer_params, values):
            for p in params:
                p.requires_grad_(alpha > 0)
            if alpha > 0:
                by_rate.setdefault(self.recipe.lr * alpha, []).extend(params)
        self._multipliers, self.groups = values, list(by_rate.items())

    @property
    def multipliers(self) -> list[float]:
        """The multipliers applied last, as Python floats (a tensor's are read on the host here)."""
        if isinstance(self._multipliers, torch.Tensor):
            self._multipliers = self._multipliers.tolist()
        return self._multipliers

    @property
    def any_trainable(self) -> bool:
        """Whether any layer trains (a multiplier above 0): else an epoch takes no step."""
        return bool(self.groups)

    def zero_grad(self) -> None:
        """Every layer's gradients dropped, the frozen layers' too: none outlives a freeze."""
        for params in self.layer_params:
            for p in params:
                p.grad = None

    def rate_factor(self) -> float:
        """The schedule's factor on every rate at the next step t (0-based): (t+1)/W during the W warm-up
        steps, then 1 until the last D steps, which decay linearly, 1 − (t−(T−D))/D, from the full rate
        down to rate/D at the last of the T steps. D: 0 (constant, or T unknown), T−W (linear), or one
        epoch's steps, at most T−W (stable-decay: warmup-stable-decay, as in MiniCPM, Hu et al. 2024)."""
        t, warmup = self.steps_taken, self.warmup_steps
        if t < warmup:
            return (t + 1) / warmup
        decay = self._decay_steps()
        start = self.total_steps - decay
        return 1.0 if decay <= 0 or t < start else max(0.0, 1.0 - (t - start) / decay)

    def _decay_steps(self) -> int:
        """D, the schedule's decaying steps at the end of the run (see rate_factor; stable-decay with no
        epoch length given decays over all T−W, as linear)."""
        room = self.total_steps - self.warmup_steps
        if self.recipe.schedule == "constant" or room <= 0:
            return 0
        if self.recipe.schedule == "stable-decay" and self.epoch_steps > 0:
            return min(self.epoch_steps, room)
        return room

    @torch.no_grad()
    def step(self) -> None:
        """One update of every trainable parameter that has a gradient, at the schedule's rates."""
        factor = self.rate_factor()
        if self.rates is None:
            calls = [(lr * factor, params) for lr, params in self.groups]
        else:
            rates = self.rates * factor if factor != 1.0 else self.rates
            rates = rates.float() if rates.device.type == "cuda" else rates
            calls = list(zip(rates.unbind(), self.layer_params))
        calls = [(lr, live) for lr, params in calls if (live := [p for p in params if p.grad is not None])]
        if self.recipe.optimizer == "sgd":
            for lr, live in calls:
                self._sgd(live, lr)
        elif calls:  # Adam: every step count first, in one launch for all layers
            states = [[self.state.get(p) or self._new_adam_state(p) for p in live] for _, live in calls]
            torch._foreach_add_([s["step"] for group in states for s in group], 1)
            for (lr, live), group in zip(calls, states):
                self._adam(live, group, lr)
        self.steps_taken += 1

    def _adam(self, params: list[nn.Parameter], states: list[dict[str, torch.Tensor]],
              lr: float | torch.Tensor) -> None:
        """torch.optim.Adam's fused update of `params`, whose step counts already count this step."""
        torch._fused_adam_(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                           [s["exp_avg_sq"] for s in states], [], [s["step"] for s in states], lr=lr,
                           beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1], weight_decay=self.recipe.weight_decay,
                           eps=ADAM_EPS, amsgrad=False, maximize=False)

    def _new_adam_state(self, p: nn.Parameter) -> dict[str, torch.Tensor]:
        state = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                 "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                 "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        self.state[p] = state
        return state

    def _sgd(self, params: list[nn.Parameter], lr: float | torch.Tensor) -> None:
        momentum = self.recipe.momentum
        if momentum == 0:
            self._fused_sgd(params, [], lr, first=False)
            return
        fresh = [p for p in params if p not in self.state]  # dict look-ups: by identity, never tensor ==
        old = [p for p in params if p in self.state]
        for p in fresh:  # torch.optim.SGD: a parameter's first step copies its gradient into the buffer
            self.state[p] = {"momentum_buffer": torch.empty_like(p.grad)}
        for group, first in ((fresh, True), (old, False)):
            if group:
                self._fused_sgd(group, [self.state[p]["momentum_buffer"] for p in group], lr, first)

    def _fused_sgd(self, params: list[nn.Parameter], buffers: list[torch.Tensor], lr: float | torch.Tensor,
                   first: bool) -> None:
        torch._fused_sgd_(params, [p.grad for p in params], buffers, weight_decay=self.recipe.weight_decay,
                          momentum=self.recipe.momentum, lr=lr, dampening=0.0, nesterov=False, maximize=False,
                          is_first_step=first)
