"""The digits setup's source samples and target splits per shift family (pure data: no models, no training).

- standard family (input- and output-level shifts): source = the source half's renders (10 digits);
  target pool = the target half's renders, corrupted (input) or label-flipped y -> 9 - y (output);
- feature family: five superclasses {d, d+5}; the source holds digits 0-4 of the source half, the target
  pool digits 5-9 of the target half, labelled d - 5: the same classes, other subpopulations.
Every target pool is split per seed, class by class, into exact numbers of test, validation and training
images (the setup says how many).
"""
from __future__ import annotations

from functools import lru_cache

import torch

from .digits import rendered
from ..core.data import Split, TaskData, flipped_labels

FAMILIES = ("standard", "feature")


def family(shift: str) -> str:
    """The shift family a shift's source model and pools belong to."""
    return "feature" if shift == "feature" else "standard"


@lru_cache(maxsize=len(FAMILIES))
def source_and_pool(family_name: str) -> tuple[Split, Split]:
    """(source sample, unshifted target pool) of a family, before any corruption or label flip."""
    source_x, source_y = rendered("source")
    target_x, target_y = rendered("target")
    if family_name == "feature":
        low, high = source_y < 5, target_y >= 5
        return Split(source_x[low], source_y[low]), Split(target_x[high], target_y[high] - 5)
    return Split(source_x, source_y), Split(target_x, target_y)


def _class_orders(labels: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
    """Each class's indices in a seeded random order (class 0 first)."""
    orders = []
    for label in range(int(labels.max()) + 1):
        idx = torch.nonzero(labels == label).flatten()
        orders.append(idx[torch.randperm(len(idx), generator=generator)])
    return orders


@lru_cache(maxsize=8)  # ~37 MB each; experiment.load_task keeps its own cache of tasks
def task(shift: str, corruption: str | None, severity: int, per_class: tuple[int, int, int], shots_per_class: int,
         seed: int) -> TaskData:
    """The source sample and target splits of one checked task, fixed by `seed`.

    `per_class` = (test, validation, training candidates) images of every class, taken in this order from
    each class's seeded order; the training split is the first `shots_per_class` candidates of every
    class, so a larger K adds images to a smaller K's. The input shift corrupts all of these in one batch,
    whatever K is, so an image is corrupted the same way at every K.
    """
    source, pool = source_and_pool(family(shift))
    test_k, val_k, train_k = per_class
    if not 1 <= shots_per_class <= train_k:
        raise ValueError(f"{shots_per_class} shots per class: the pool has 1 to {train_k}")
    orders = _class_orders(pool.y, torch.Generator().manual_seed(seed))
    if min(len(o) for o in orders) < sum(per_class):
        raise ValueError(f"{per_class} images per class: the pool has {min(len(o) for o in orders)}")
    ranges = ((0, test_k), (test_k, test_k + val_k), (test_k + val_k, sum(per_class)))
    pool = pool.subset(torch.cat([o[a:b] for a, b in ranges for o in orders]))
    classes = len(orders)
    if shift == "input":
        from .corruptions import corrupt  # cv2, scipy and scikit-image: loaded only for the input shift

        pool = Split(corrupt(pool.x, corruption, severity, seed=seed), pool.y)
    elif shift == "output":
        pool = Split(pool.x, flipped_labels(pool.y, classes))
    first_train = (test_k + val_k) * classes
    train = torch.cat([first_train + c * train_k + torch.arange(shots_per_class) for c in range(classes)])
    return TaskData(source=source, train=pool.subset(train),
                    val=pool.subset(torch.arange(test_k * classes, first_train)),
                    test=pool.subset(torch.arange(test_k * classes)), num_classes=classes)
