"""Fine-tuning with one learning-rate multiplier per layer: lr_l = base_lr × alpha_l (× the schedule's factor).

The loop reads top to bottom: snapshot, zero-shot accuracy, epochs of shuffled minibatches drawn
from device-resident tensors (no DataLoader, no host sync per step), validation each epoch with the
best-validation weights kept, then final / best-validation test accuracy and per-layer change.
Layers with alpha 0 are frozen (requires_grad off: no weight-gradient work); the others step in one
fused optimizer call per distinct learning rate, or per layer when a reweighter's multipliers arrive as
a device tensor (optim.py). BatchNorm running statistics stay frozen
unless `train_bn_stats`. When the multipliers are fixed and the first stages of the network are all
frozen, that prefix runs once over the data (no grad) and the epochs train the rest on its cached
features, when that saves work (stages.py). The pretrained model's test and validation accuracies
come from a cache shared across runs (evaluation.py), and the best-validation state's test accuracy
needs no extra pass when it is the final or the pretrained state. On a CPU run that leaves a core free
(device.py: `spare_cpu_core`), evaluation runs on a second thread (evaluation.py: `Evaluator`): epoch k
is validated on a copy of its weights while epoch k + 1 trains, with the same numbers; `progress`
hears of an epoch once its validation is done. A `Reweighter` may change the
multipliers at the start of each epoch, before each step, or between each step's backward pass and its
update, from that step's own gradients (Auto-RGN does). Runs use the CPU thread
policy of device.py. The recipe's `schedule` scales every rate at each step over the run's epochs ×
batches steps (optim.py: constant, linear decay, or constant then decay over the last epoch), after
`warmup` epochs of linear warm-up. With `translate` > 0 each training image is shifted by a random
offset (augmentation; edge pixels repeated), so the frozen-prefix cache is off. A non-finite loss (or
weights, or re-weighting scores) sets a device-side flag, read once per epoch with the epoch's other
statistics: the run then stops there as "diverged" (the best-validation numbers of the epochs before
stay; the final test accuracy is None).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .core.data import Split, TaskData
from .core.recipe import Recipe
from .device import autocast, maybe_compile, prepare_model, resolve_device, spare_cpu_core, thread_policy
from .digest import model_digest
from .evaluation import (Evaluator, accuracy, cached_accuracy, clone_state, eval_batch, flat_layer_params,
                         load_state, param_change)
from .layers import Layer
from .errors import AutoFTError, NonFiniteError
from .optim import LayerwiseOptimizer
from .stages import feature_budget, frozen_prefix, prefix_cache_pays

class Reweighter(Protocol):
    """Re-weights the multipliers during fine-tuning. `every`: "epoch" (called at the start of each epoch),
    "step" (before each step, given its minibatch) or "gradient" (after each step's backward pass, with the
    step's gradients in the parameters' .grad: the multipliers for this very update)."""

    every: str

    def __call__(self, model: nn.Module,
                 batch: tuple[torch.Tensor, torch.Tensor] | None) -> Sequence[float] | torch.Tensor:
        """New multipliers given the current model (and the coming minibatch when every == "step"); a float64
        tensor on the model's device stays there (optim.py)."""


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
        """The result's fields, as a stored run keeps them."""
        return asdict(self)


Progress = Callable[[int, int, dict], None]


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
    device = device if isinstance(device, torch.device) else resolve_device(device)
    model = prepare_model(model, device)
    with thread_policy(model, device):
        return _finetune(model, layers, multipliers, data.to(device), cfg, seed, device, reweighter, progress)


def _finetune(model: nn.Module, layers: list[Layer], multipliers: Sequence[float], raw: TaskData, cfg: Recipe,
              seed: int, device: torch.device, reweighter: Reweighter | None,
              progress: Progress | None) -> FinetuneResult:
    started = time.perf_counter()
    named = dict(model.named_parameters())
    if cfg.translate and raw.train.x.dim() != 4:
        raise AutoFTError(f"translate={cfg.translate} shifts image batches (N, C, H, W), but this task's training "
                          f"inputs have shape {tuple(raw.train.x.shape)}: use translate=0")
    steps_per_epoch = math.ceil(len(raw.train) / cfg.batch_size)
    optimizer = LayerwiseOptimizer([[named[p] for p in layer.param_names] for layer in layers], cfg,
                                   total_steps=cfg.epochs * steps_per_epoch,
                                   warmup_steps=min(cfg.warmup, cfg.epochs) * steps_per_epoch,
                                   epoch_steps=steps_per_epoch)
    optimizer.apply(multipliers)
    initial = flat_layer_params(model, layers)  # fresh tensors (torch.cat copies)
    net, data = _skip_frozen_prefix(model, layers, multipliers, raw, cfg, reweighter, device)
    # the pretrained model's accuracies: once per (model, task) in this process, shared by methods and candidates
    pretrained = model_digest(model)
    with Evaluator(net, background=spare_cpu_core(device)) as evaluator:
        state = evaluator.snapshot()
        zero_shot = cached_accuracy(pretrained, raw.test, device, lambda: evaluator.submit(data.test, state))
        validations = [_Validation({"epoch": 0}, cached_accuracy(pretrained, raw.val, device,
                                                                 lambda: evaluator.submit(data.val, state)), None)]
        best = {"epoch": -1, "val_acc": -math.inf, "state": None}
        train_net = maybe_compile(net, device)
        generator = torch.Generator().manual_seed(seed)
        history: list[dict] = []
        n = len(data.train)
        steps = 0
        diverged: int | None = None
        for epoch in range(1, cfg.epochs + 1):
            try:
                loss_sum, correct, bad, taken = _train_epoch(train_net, model, data.train, optimizer, cfg, reweighter,
                                                             generator)
                steps += taken
            except NonFiniteError:  # the re-weighting scores of a model that has blown up
                loss_sum, correct, bad = torch.tensor(float("nan")), torch.tensor(0), torch.tensor(True)
            bad = bad.to(device) | ~_finite(optimizer.layer_params)  # the epoch's last step may have broken the weights
            loss, hits, broken = torch.stack([loss_sum.to(device), correct.to(device).float(), bad.float()]).tolist()
            stats = {"epoch": epoch, "train_loss": loss / max(n, 1), "train_acc": hits / max(n, 1), "val_acc": None,
                     "multipliers": list(optimizer.multipliers)}
            history.append(stats)
            if broken:
                diverged = epoch
                break
            state = evaluator.snapshot()
            validations.append(_Validation(stats, evaluator.submit(data.val, state), state))
            while validations and (len(validations) > 1 or validations[0].accuracy.done()):  # one may run on
                best = _settle(validations.pop(0), best, net, cfg.epochs, progress)

        test_acc = None if diverged else accuracy(net, data.test)  # beside the last validation, if that runs apart
        for waiting in validations:
            best = _settle(waiting, best, net, cfg.epochs, progress)
        zero_shot_acc = zero_shot.result()
    change = param_change(model, layers, initial)
    best_test = _best_state_test_acc(net, data.test, best, cfg.epochs, test_acc, zero_shot_acc)
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()  # as the source models come: ready for evaluation and probes
    return FinetuneResult(zero_shot_acc=zero_shot_acc, test_acc=test_acc, best_val_epoch=best["epoch"],
                          best_val_acc=best["val_acc"], best_val_test_acc=best_test, param_change=change,
                          multipliers=list(optimizer.multipliers), history=history,
                          seconds=time.perf_counter() - started, status="diverged" if diverged else "ok",
                          diverged_epoch=diverged, steps=steps)


@dataclass
class _Validation:
    """An epoch's statistics waiting for its validation accuracy, and the state measured (None: `net` at once)."""

    stats: dict
    accuracy: Future[float]
    state: dict[str, torch.Tensor] | None


def _settle(done: _Validation, best: dict, net: nn.Module, epochs: int, progress: Progress | None) -> dict:
    """Write an epoch's validation accuracy into its statistics, report the epoch, and return the
    best-validation record (epoch, accuracy, state: kept unless it is the pretrained or the final one)."""
    stats = done.stats
    stats["val_acc"] = val_acc = done.accuracy.result()
    if progress is not None and stats["epoch"] > 0:
        progress(stats["epoch"], epochs, stats)
    if val_acc <= best["val_acc"]:
        return best
    keep = 0 < stats["epoch"] < epochs
    state = (done.state if done.state is not None else clone_state(net)) if keep else None
    return {"epoch": stats["epoch"], "val_acc": val_acc, "state": state}


def _train_epoch(net: nn.Module, model: nn.Module, train: Split, optimizer: LayerwiseOptimizer,
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
    stats = EpochStats()
    for start in range(0, n, cfg.batch_size):
        idx = order[start:start + cfg.batch_size]
        x, y = train.x[idx], train.y[idx]
        if cfg.translate:
            x = translated(x, cfg.translate, generator)
        if reweighter is not None and reweighter.every == "step":
            optimizer.apply(reweighter(model, (x, y)))
            set_train_mode(model, cfg.train_bn_stats)
        if not optimizer.any_trainable:
            continue
        with autocast(device):
            logits = net(x)
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        if reweighter is not None and reweighter.every == "gradient":
            optimizer.apply(reweighter(model, None))
        optimizer.step()
        stats.add(loss, logits, y)
    return (*stats.totals(device), len(stats.losses))


class EpochStats:
    """An epoch's training loss and correct count, kept on the device at one kernel launch per step (the
    predictions' argmax: on a GPU bound by the host issuing kernels, each launch counts) and summed once,
    at the epoch's end."""

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.sizes: list[int] = []
        self.predictions: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Record one step: its mean loss, its batch size and its predictions."""
        self.losses.append(loss.detach())
        self.sizes.append(len(y))
        self.predictions.append(logits.detach().argmax(dim=1))
        self.labels.append(y)

    def totals(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(summed loss, correct count, non-finite flag), on the device. The flag is the sum's: cross-entropy
        is never negative, so the sum is non-finite exactly when a step's loss was (or it overflowed fp32,
        which only a diverged run reaches)."""
        if not self.losses:  # no step taken (nothing trainable)
            zero = torch.zeros((), device=device)
            return zero, zero.long(), zero.bool()
        sizes = torch.tensor(self.sizes, dtype=torch.float32).to(device, non_blocking=True)
        loss_sum = torch.dot(torch.stack(self.losses).float(), sizes)
        correct = (torch.cat(self.predictions) == torch.cat(self.labels)).sum()
        return loss_sum, correct, ~torch.isfinite(loss_sum)


def translated(x: torch.Tensor, limit: int, generator: torch.Generator) -> torch.Tensor:
    """Each image of the batch (N, C, H, W) shifted by its own random offset (dy, dx) in [-limit, limit]²,
    edge pixels repeated: output pixel (i, j) is input pixel (clamp(i - dy), clamp(j - dx)). The offsets
    come from `generator`: reproducible."""
    n, _, height, width = x.shape
    dy, dx = torch.randint(-limit, limit + 1, (2, n, 1), generator=generator).to(x.device)
    rows = (torch.arange(height, device=x.device) - dy).clamp_(0, height - 1)  # (N, H)
    cols = (torch.arange(width, device=x.device) - dx).clamp_(0, width - 1)  # (N, W)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return x.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _finite(groups: list[list[nn.Parameter]]) -> torch.Tensor:
    """Whether every parameter is finite, as a device-side bool: the sum of their L1 norms is NaN or inf when
    any entry is (one multi-tensor norm: a few kernel launches per epoch on CUDA, not one per parameter)."""
    params = [p.detach() for group in groups for p in group]
    if not params:
        return torch.ones((), dtype=torch.bool)
    return torch.isfinite(torch.stack(torch._foreach_norm(params, 1, dtype=torch.float32)).sum())


def _best_state_test_acc(net: nn.Module, test: Split, best: dict, epochs: int, final: float | None,
                         zero_shot: float) -> float:
    """Test accuracy of the best-validation state: the final or the pretrained one's when it is one of them
    (no extra test pass), else measured with that state loaded into `net` and the final state put back."""
    if best["epoch"] == epochs:
        return final
    if best["epoch"] == 0:
        return zero_shot
    final_state = clone_state(net)
    load_state(net, best["state"])
    acc = accuracy(net, test)
    load_state(net, final_state)
    return acc


def _skip_frozen_prefix(model: nn.Module, layers: list[Layer], multipliers: Sequence[float], data: TaskData,
                        cfg: Recipe, reweighter: Reweighter | None,
                        device: torch.device) -> tuple[nn.Module, TaskData]:
    """(network to train, its inputs): the model and the data, or the part after a frozen prefix and
    the prefix's features, computed once. Only when the multipliers cannot change during the run, the
    cache saves work and its features fit the memory budget (stages.py)."""
    if reweighter is not None or cfg.train_bn_stats or cfg.translate:
        return model, data
    if not prefix_cache_pays(cfg.epochs, len(data.train), len(data.val), len(data.test)):
        return model, data
    frozen = {p for layer, alpha in zip(layers, multipliers) if alpha == 0 for p in layer.param_names}
    split = frozen_prefix(model, frozen)
    if split is None:
        return model, data
    prefix, rest = split
    splits = (data.train, data.val, data.test)
    per_image = _features(prefix, data.train.x[:1], device)
    needed = per_image.element_size() * per_image.numel() * sum(len(s) for s in splits)
    if needed > feature_budget(device):
        return model, data
    features = [Split(_features(prefix, s.x, device), s.y) for s in splits]
    return rest, TaskData(data.source, *features, data.num_classes)


@torch.no_grad()
def _features(prefix: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The frozen prefix's output for every image, in evaluation batches (no autograd graph kept)."""
    prefix.eval()
    batch = eval_batch(x, device)
    with autocast(device):
        return torch.cat([prefix(x[i:i + batch]) for i in range(0, len(x), batch)])
