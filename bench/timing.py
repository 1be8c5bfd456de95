"""Timing that holds on a shared machine: one thread, CPU time, alternated A/B repeats, median and spread.

Wall clock on a CPU shared with other jobs measures the other jobs; the process's CPU time (one
intra-op thread, so no OpenMP spin-waiting either) measures the work. On CUDA the GPU's elapsed time
is what counts, so there it is wall clock after a device synchronisation.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


def clock(device: torch.device) -> Callable[[], float]:
    """A timer in seconds: process CPU time on the CPU, synchronised wall time on CUDA."""
    if device.type == "cuda":
        def cuda_now() -> float:
            torch.cuda.synchronize(device)
            return time.perf_counter()
        return cuda_now
    return time.process_time


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile)."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


@dataclass
class Comparison:
    """Paired timings of a baseline and the project's code; ratio = baseline time / project time (>= 1: the
    project is at least as fast). The verdict reads the median of the paired ratios; best-of (fastest
    baseline / fastest project) is printed beside it, as noise on a shared machine only adds time."""

    label: str
    baseline: list[float]
    project: list[float]

    @property
    def ratios(self) -> list[float]:
        return [b / p for b, p in zip(self.baseline, self.project)]

    def report(self, target: float, unit: str = "s") -> str:
        b, p, r = quartiles(self.baseline), quartiles(self.project), quartiles(self.ratios)
        verdict = "meets" if r[1] >= target else f"misses by {target - r[1]:.3f}"
        best = min(self.baseline) / min(self.project)
        return (f"{self.label:<32} baseline {b[1]:6.3f} {unit} [{b[0]:.3f}-{b[2]:.3f}]  project {p[1]:6.3f} {unit} "
                f"[{p[0]:.3f}-{p[2]:.3f}]  ratio {r[1]:.3f} [IQR {r[0]:.3f}-{r[2]:.3f}, range "
                f"{min(self.ratios):.3f}-{max(self.ratios):.3f}; best-of {best:.3f}]  target >= {target:g}: {verdict}")


def alternate(label: str, baseline: Callable[[], float], project: Callable[[], float], repeats: int) -> Comparison:
    """Each callable times its own measured part and returns seconds; one warm-up each, then `repeats`
    pairs whose order alternates (ABBA...), so a slow spell of the machine hits both sides alike."""
    baseline(), project()
    out = Comparison(label, [], [])
    for r in range(repeats):
        if r % 2 == 0:
            out.baseline.append(baseline())
            out.project.append(project())
        else:
            out.project.append(project())
            out.baseline.append(baseline())
    return out


def profiled(device: torch.device, label: str, fn: Callable[[], object], rows: int = 15) -> None:
    """Run `fn` once under torch.profiler and print its top operators by self time (device time on CUDA)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"-- profile: {label}\n{prof.key_averages().table(sort_by=key, row_limit=rows)}", flush=True)
