"""Wall time of the embedded full sweep (all methods × three shifts, 14 corruptions, 1 seed): cold (a fresh
store) and warm (the same command again: all cache hits), each one `python -m autoft_core sweep` command.

    python bench/sweep.py [any sweep flags, e.g. --epochs 2 --shots 100 --methods full,linear-probe
                           --corruptions gaussian_noise,frost --max-parallel 2 --backend ray]

Flags given here override the full-sweep defaults. A script, not a test: the full sweep takes about 20 minutes on a 2-core CPU.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autoft_core.store import ResultStore  # noqa: E402

COLD_TARGET_S, WARM_TARGET_S = 600.0, 5.0
FULL_SWEEP = ["--setup", "digits", "--shifts", "all", "--corruptions", "all", "--methods", "all", "--seeds", "0"]


def timed(command: list[str]) -> float:
    """Seconds one command takes, start-up included (it is what a user waits for)."""
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True)
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="autoft-bench-") as tmp:
        store = Path(tmp) / "results.sqlite"
        command = [sys.executable, "-m", "autoft_core", "sweep", *FULL_SWEEP, *sys.argv[1:], "--store", str(store)]
        cold, warm = timed(command), timed(command)
        frame = ResultStore(store).frame()
    runs = len(frame)
    print(f"sweep {' '.join(sys.argv[1:]) or '(full, default recipe)'}: {runs} runs")
    print(f"cold {cold:.1f}s = {cold / max(runs, 1):.1f}s per run (in-run mean {frame['seconds'].mean():.1f}s, "
          f"max {frame['seconds'].max():.1f}s)")
    print(f"warm {warm:.1f}s (all cache hits)")
    for label, seconds, target in (("cold", cold, COLD_TARGET_S), ("warm", warm, WARM_TARGET_S)):
        verdict = "meets" if seconds <= target else f"misses by {seconds - target:.1f}s"
        print(f"target {label} <= {target:g}s: {verdict}")


if __name__ == "__main__":
    main()
