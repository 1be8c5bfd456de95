"""How many CPU cores this process may use; torch-free, so the sweep driver asks without importing torch."""
from __future__ import annotations

import os


def cpu_count() -> int:
    """Cores this process may use (the affinity mask where the OS has one, not the host's total)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
