"""A process's first CIFAR-10-C-sized fine-tuning run against its later ones, by phase: what a user who runs one
task pays on top of a sweep's steady state.

WRN-28-10 (random weights), random data of a CIFAR-10-C task's size (1,000 training images × 25 epochs, 1,000
validation images each epoch, 10,000 test images), every layer trained; `--runs` runs in this process, each
timed (synchronised wall time on CUDA) with the functions `finetune` calls wrapped in synchronised timers
(bench/phases.py), then the same run again without the timers. The first run pays what a process sets up once:
the zero-shot passes (later runs read them from the accuracy cache, cleared here so each run pays its own
passes, as a new task would) and, with AUTOFT_CUDNN_BENCHMARK=1, cuDNN's search for each new batch shape
(64 and the last 40 of training, 1,000 for validation, 4,096 and 1,808 for test).

    python bench/first_run.py [--runs 3]        (on a machine with CUDA)
    AUTOFT_CUDNN_BENCHMARK=1 python bench/first_run.py
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.phases import phase_totals  # noqa: E402
from bench.throughput import build, cifar10c_sized_run, cifar10c_sized_task  # noqa: E402
from autoft_core.device import AUTOTUNE_ENV, prepare_model, resolve_device  # noqa: E402
from autoft_core.errors import AutoFTError  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    try:
        device = resolve_device(args.device)
    except AutoFTError as exc:
        sys.exit(f"bench/first_run.py: {exc}")
    if device.type != "cuda":
        sys.exit("bench/first_run.py: 25 epochs of WRN-28-10 need a GPU (on this CPU they take hours): run it where "
                 "CUDA is present, e.g. through bench/gpu.sh")
    started = time.perf_counter()
    base = prepare_model(build("wrn"), device)
    data = cifar10c_sized_task(device)
    print(f"WRN-28-10, CIFAR-10-C-sized run; {torch.cuda.get_device_name(device)}; "
          f"{AUTOTUNE_ENV}={os.environ.get(AUTOTUNE_ENV, '0')}; model and data ready in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    for run in range(1, args.runs + 1):
        seconds, totals = phase_totals(lambda: cifar10c_sized_run(base, data, device), device)
        again = cifar10c_sized_run(base, data, device)
        ranked = sorted(totals.items(), key=lambda kv: -kv[1])
        listed = ", ".join(f"{name} {s:.2f}" for name, s in ranked if s >= 0.01)
        print(f"run {run}: {seconds:.2f} s with phase timers (s each: {listed}); again without them {again:.2f} s",
              flush=True)


if __name__ == "__main__":
    main()
