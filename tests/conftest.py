"""Shared fixtures. Pretrained digits models live in the normal cache (trained once per machine);
each test gets its own result store so that runs never leak between tests."""
from __future__ import annotations

import pytest
import torch

from autoft_core.store import ResultStore


@pytest.fixture(autouse=True)
def _deterministic_threads() -> None:
    torch.manual_seed(0)


@pytest.fixture
def store(tmp_path) -> ResultStore:
    return ResultStore(tmp_path / "results.sqlite")
