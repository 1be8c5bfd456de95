"""The tensors one fine-tuning task needs: a source sample and the target train/val/test splits."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Split:
    """Images (N, C, H, W) float32 in [0, 1] (or features) and their integer labels (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"{self.x.shape[0]} images but {self.y.shape[0]} labels")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str) -> "Split":
        """This split on `device` (copies issued without waiting)."""
        return Split(self.x.to(device, non_blocking=True), self.y.to(device, non_blocking=True))

    def subset(self, index: torch.Tensor) -> "Split":
        """The examples at `index`, in that order."""
        return Split(self.x[index], self.y[index])


@dataclass(frozen=True)
class TaskData:
    """A source sample (what the model was trained on) and the shifted target's splits."""

    source: Split
    train: Split
    val: Split
    test: Split
    num_classes: int

    def to(self, device: torch.device | str) -> "TaskData":
        """Every split on `device`."""
        return TaskData(self.source.to(device), self.train.to(device), self.val.to(device),
                        self.test.to(device), self.num_classes)


def flipped_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The output-level shift (CIFAR-10F: y becomes 9 − y): label y becomes K − 1 − y, every setup alike."""
    return num_classes - 1 - labels


def balanced_indices(labels: torch.Tensor, per_class: int, generator: torch.Generator) -> torch.Tensor:
    """Up to `per_class` random indices of each label (all there are when fewer), in a seeded order."""
    chosen = []
    for label in torch.unique(labels):
        idx = torch.nonzero(labels == label).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        chosen.append(idx[:per_class])
    out = torch.cat(chosen)
    return out[torch.randperm(len(out), generator=generator)]
