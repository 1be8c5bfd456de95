"""Shared fixtures. Pretrained digits models live in the normal cache (trained once per machine);
each test gets its own result store so that runs never leak between tests."""
from __future__ import annotations

import pytest
import torch

from autoft_core.store import ResultStore


@pytest.fixture(autouse=True)
def _deterministic_threads() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of small-model tests: they gain nothing from threads, and on a
    shared, busy CPU spinning threads cost many-fold. Use with `pytestmark = pytest.mark.usefixtures(...)`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def store(tmp_path) -> ResultStore:
    return ResultStore(tmp_path / "results.sqlite")
