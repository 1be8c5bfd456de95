"""A fixed intra-op CPU thread count around work whose numbers must not depend on the machine.

A convolution's float sums are split over torch's intra-op threads, so the thread count changes the
last bits of every result and, over many steps, the accuracy (the pretrained digits model: 0.848 at one
thread, 0.822 at two). Setups that promise reproducible numbers on any CPU pin it (`Setup.cpu_threads`).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def fixed_cpu_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to `count` inside the block and restored after (None: untouched)."""
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
