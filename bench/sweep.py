"""Wall and CPU time of one `python -m autoft_core sweep` command, cold (a fresh store) then warm (the same
command again: every run a cache hit), start-up included: what a user waits for.

    python bench/sweep.py [--warm-only] [--repeats N] [sweep flags, e.g. --epochs 2 --methods full,lp-ft]

Any other flag goes to `sweep` and overrides the full-sweep defaults (every method x three shifts x 14
corruptions, seed 0, the setup's recipe: about 20 minutes cold on a 2-core CPU). --warm-only skips the
cold sweep: it fills a scratch store with placeholder records for every run the command plans (the
same keys, no training) and times the warm command alone, i.e. the look-ups. The machine's load average
is printed with the figures: on a shared CPU the wall time depends on it, the CPU time much less.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

COLD_TARGET_S, WARM_TARGET_S = 600.0, 1.0
FULL_SWEEP = ["--setup", "digits", "--shifts", "all", "--corruptions", "all", "--methods", "all", "--seeds", "0"]
PLACEHOLDER = {"zero_shot_acc": 0.0, "test_acc": 0.0, "best_val_test_acc": 0.0, "best_val_epoch": 0, "seconds": 0.0}


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def fill_placeholders(sweep_args: list[str], store: Path) -> int:
    """Store a placeholder record under the key of every run `sweep <sweep_args>` plans; their number."""
    from autoft_core.cli import build_parser
    from autoft_core.cli_args import paths_from
    from autoft_core.experiments.commands import sweep_plan
    from autoft_core.store import ResultStore

    args = build_parser().parse_args(["sweep", *sweep_args])
    configs = sweep_plan(args, paths_from(args))
    target = ResultStore(store)
    for cfg in configs:
        target.put(cfg.key(), cfg.to_dict(), PLACEHOLDER)
    return len(configs)


def verdict(seconds: float, target: float) -> str:
    return "meets" if seconds <= target else f"misses by {seconds - target:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warm-only", action="store_true", help="time the warm command on placeholder records")
    parser.add_argument("--repeats", type=int, default=5, help="warm commands timed (default 5)")
    args, sweep_args = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="autoft-bench-") as tmp:
        store = Path(tmp) / "results.sqlite"
        command = [sys.executable, "-m", "autoft_core", "sweep", *FULL_SWEEP, *sweep_args, "--store", str(store)]
        print(f"sweep {' '.join(sweep_args) or '(full, default recipe)'}; load average "
              f"{' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")
        if args.warm_only:
            print(f"{fill_placeholders([*FULL_SWEEP, *sweep_args], store)} placeholder records stored")
        else:
            wall, cpu = timed(command)
            print(f"cold {wall:.1f} s wall, {cpu:.1f} s CPU; target <= {COLD_TARGET_S:g} s wall: "
                  f"{verdict(wall, COLD_TARGET_S)}")
        timed(command)  # the first warm command also builds the method catalogue if the methods changed
        warm = [timed(command) for _ in range(args.repeats)]
    walls, cpus = sorted(w for w, _ in warm), sorted(c for _, c in warm)
    wall = statistics.median(walls)
    print(f"warm (all cache hits, {args.repeats} commands): median {wall:.2f} s wall [{walls[0]:.2f}-{walls[-1]:.2f}], "
          f"{statistics.median(cpus):.2f} s CPU [{cpus[0]:.2f}-{cpus[-1]:.2f}]; target <= {WARM_TARGET_S:g} s: "
          f"{verdict(wall, WARM_TARGET_S)} (wall), {verdict(statistics.median(cpus), WARM_TARGET_S)} (CPU)")
    print(f"load average now {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
