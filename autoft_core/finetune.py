"""Fine-tuning with one learning-rate multiplier per layer: lr_l = base_lr × alpha_l.

The loop reads top to bottom: snapshot, zero-shot accuracy, epochs of shuffled minibatches drawn
from device-resident tensors (no DataLoader, no host sync per step), validation each epoch with the
best-validation weights kept, then final / best-validation test accuracy and per-layer change.
A non-finite loss (or weights, or re-weighting scores) sets a device-side flag, read once per epoch
with the epoch's other statistics: the run then stops there as "diverged" (the best-validation
numbers of the epochs before stay; the final test accuracy is None). Layers with alpha 0 are frozen
(requires_grad off: no weight-gradient work); BatchNorm running statistics stay frozen unless
`train_bn_stats`. When the multipliers are fixed and the first stages of the network are all
frozen, that prefix runs once over the data (no grad) and the epochs train the rest on its cached
features. A `Reweighter` may change the multipliers at the start of
each epoch or before each step (Auto-RGN does).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .core.data import Split, TaskData
from .core.recipe import Recipe
from .device import autocast, prepare_model, resolve_device
from .evaluation import EVAL_BATCH, accuracy, flat_layer_params, param_change
from .layers import Layer
from .stages import frozen_prefix
from .errors import NonFiniteError

class Reweighter(Protocol):
    """Re-weights the multipliers during fine-tuning; `every` is "epoch" or "step"."""

    every: str

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor] | None) -> Sequence[float]:
        """New multipliers given the current model (and the coming minibatch when every == "step")."""


@dataclass
class FinetuneResult:
    """What one fine-tuning run measured."""

    zero_shot_acc: float
    test_acc: float | None  # None when the run diverged (its final weights are not finite)
    best_val_epoch: int
    best_val_acc: float
    best_val_test_acc: float
    param_change: list[float]
    multipliers: list[float]
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    status: str = "ok"  # or "diverged"
    diverged_epoch: int | None = None
    steps: int = 0  # optimizer steps taken (equal budgets make methods comparable)

    def to_dict(self) -> dict:
        return asdict(self)


Progress = Callable[[int, int, dict], None]


class _LayerwiseOptimizer:
    """One optimizer param group per layer; applying multipliers sets lr and requires_grad."""

    def __init__(self, model: nn.Module, layers: list[Layer], cfg: Recipe, device: torch.device) -> None:
        self.cfg = cfg
        self.groups = [layer.parameters(model) for layer in layers]
        param_groups = [{"params": params, "lr": cfg.lr} for params in self.groups]
        fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
        if cfg.optimizer == "adam":
            self.opt = torch.optim.Adam(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **fast)
        else:
            self.opt = torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum,
                                       weight_decay=cfg.weight_decay, **fast)
        self.multipliers: list[float] = []

    def apply(self, multipliers: Sequence[float]) -> None:
        if len(multipliers) != len(self.groups):
            raise ValueError(f"{len(multipliers)} multipliers for {len(self.groups)} layers")
        self.multipliers = [float(a) for a in multipliers]
        for group, params, alpha in zip(self.opt.param_groups, self.groups, self.multipliers):
            if alpha < 0 or alpha != alpha:
                raise ValueError(f"multiplier {alpha} is not a finite non-negative number")
            group["lr"] = self.cfg.lr * alpha
            for p in params:
                p.requires_grad_(alpha > 0)

    @property
    def any_trainable(self) -> bool:
        return any(a > 0 for a in self.multipliers)


def set_train_mode(model: nn.Module, train_bn_stats: bool) -> None:
    """Training mode, with BatchNorm layers kept in eval mode (frozen statistics) unless asked."""
    model.train()
    if not train_bn_stats:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def finetune(model: nn.Module, layers: list[Layer], multipliers: Sequence[float], data: TaskData,
             cfg: Recipe, seed: int = 0, device: str | torch.device | None = None,
             reweighter: Reweighter | None = None, progress: Progress | None = None) -> FinetuneResult:
    """Fine-tune `model` in place on `data.train`, layer l at lr cfg.lr × multipliers[l]; left in eval mode.
    The seed fixes the minibatch order (a local generator); `device` None means CUDA when present."""
    started = time.perf_counter()
    device = device if isinstance(device, torch.device) else resolve_device(device)
    model = prepare_model(model, device)
    data = data.to(device)
    initial = [t.clone() for t in flat_layer_params(model, layers)]
    net, data = _skip_frozen_prefix(model, layers, multipliers, data, cfg, reweighter, device)
    zero_shot = accuracy(net, data.test)

    optimizer = _LayerwiseOptimizer(model, layers, cfg, device)
    optimizer.apply(multipliers)
    generator = torch.Generator().manual_seed(seed)
    best = {"epoch": 0, "val_acc": accuracy(net, data.val), "state": _clone_state(model)}
    history: list[dict] = []
    n = len(data.train)
    steps = 0
    diverged: int | None = None
    for epoch in range(1, cfg.epochs + 1):
        try:
            loss_sum, correct, bad, taken = _train_epoch(net, model, data.train, optimizer, cfg, reweighter,
                                                         generator)
            steps += taken
        except NonFiniteError:  # the re-weighting scores of a model that has blown up
            loss_sum, correct, bad = torch.tensor(float("nan")), torch.tensor(0), torch.tensor(True)
        bad = bad.to(device) | ~_finite(optimizer.groups)  # the epoch's last step may have broken the weights
        loss, hits, broken = torch.stack([loss_sum.to(device), correct.to(device).float(), bad.float()]).tolist()
        stats = {"epoch": epoch, "train_loss": loss / max(n, 1), "train_acc": hits / max(n, 1), "val_acc": None,
                 "multipliers": list(optimizer.multipliers)}
        if broken:
            history.append(stats)
            diverged = epoch
            break
        stats["val_acc"] = val_acc = accuracy(net, data.val)
        history.append(stats)
        if val_acc > best["val_acc"]:
            best = {"epoch": epoch, "val_acc": val_acc, "state": _clone_state(model)}
        if progress is not None:
            progress(epoch, cfg.epochs, stats)

    test_acc = None if diverged else accuracy(net, data.test)
    change = param_change(model, layers, initial)
    final_state = _clone_state(model)
    model.load_state_dict(best["state"])
    best_test = accuracy(net, data.test)
    model.load_state_dict(final_state)
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()  # as the source models come: ready for evaluation and probes
    return FinetuneResult(zero_shot_acc=zero_shot, test_acc=test_acc, best_val_epoch=best["epoch"],
                          best_val_acc=best["val_acc"], best_val_test_acc=best_test, param_change=change,
                          multipliers=list(optimizer.multipliers), history=history,
                          seconds=time.perf_counter() - started, status="diverged" if diverged else "ok",
                          diverged_epoch=diverged, steps=steps)


def _train_epoch(net: nn.Module, model: nn.Module, train: Split, optimizer: _LayerwiseOptimizer,
                 cfg: Recipe, reweighter: Reweighter | None,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """One epoch of shuffled minibatches: (summed loss, correct count, any non-finite loss) on the device,
    and the number of optimizer steps taken."""
    device = train.x.device
    if reweighter is not None and reweighter.every == "epoch":
        optimizer.apply(reweighter(model, None))
    set_train_mode(model, cfg.train_bn_stats)
    n = len(train)
    order = torch.randperm(n, generator=generator).to(device, non_blocking=True)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    bad = torch.zeros((), dtype=torch.bool, device=device)
    steps = 0
    for start in range(0, n, cfg.batch_size):
        idx = order[start:start + cfg.batch_size]
        x, y = train.x[idx], train.y[idx]
        if reweighter is not None and reweighter.every == "step":
            optimizer.apply(reweighter(model, (x, y)))
            set_train_mode(model, cfg.train_bn_stats)
        if not optimizer.any_trainable:
            continue
        with autocast(device):
            logits = net(x)
            loss = F.cross_entropy(logits, y)
        optimizer.opt.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.opt.step()
        steps += 1
        loss = loss.detach()
        bad |= ~torch.isfinite(loss)  # on the device: no host sync per step
        loss_sum += loss * len(idx)
        correct += (logits.detach().argmax(dim=1) == y).sum()
    return loss_sum, correct, bad, steps


def _finite(groups: list[list[nn.Parameter]]) -> torch.Tensor:
    """Whether every parameter is finite, as a device-side bool (a sum is NaN or inf when any entry is)."""
    params = [p for group in groups for p in group]
    if not params:
        return torch.ones((), dtype=torch.bool)
    return torch.isfinite(torch.stack([p.detach().float().sum() for p in params]).sum())


def _skip_frozen_prefix(model: nn.Module, layers: list[Layer], multipliers: Sequence[float], data: TaskData,
                        cfg: Recipe, reweighter: Reweighter | None,
                        device: torch.device) -> tuple[nn.Module, TaskData]:
    """(network to train, its inputs): the model and the data, or the part after a frozen prefix and
    the prefix's features, computed once. Only when the multipliers cannot change during the run."""
    if reweighter is not None or cfg.train_bn_stats:
        return model, data
    frozen = {p for layer, alpha in zip(layers, multipliers) if alpha == 0 for p in layer.param_names}
    split = frozen_prefix(model, frozen)
    if split is None:
        return model, data
    prefix, rest = split
    features = [Split(_features(prefix, s.x, device), s.y) for s in (data.train, data.val, data.test)]
    return rest, TaskData(data.source, *features, data.num_classes)


@torch.no_grad()
def _features(prefix: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The frozen prefix's output for every image, in evaluation batches (no autograd graph kept)."""
    prefix.eval()
    with autocast(device):
        return torch.cat([prefix(x[i:i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])


def _clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
