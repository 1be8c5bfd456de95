"""Torch's CPU kernels capped at AVX2 on x86-64, so a run's numbers do not depend on the machine's CPU.

ATen's vectorised kernels and oneDNN's convolutions each use the widest instruction set the CPU offers
(AVX-512 on some of our machines, AVX2 on others), and the wider kernels add in another order: on an
AVX-512 EPYC (2026-11-26) the pretrained digits model came out different and all 42 cells of Table 1
moved (by 2.0 points at the median, 45.6 at most); capped at AVX2, the same machine gave the earlier
machines' accuracies digit for digit. Either cap alone was not enough; MKL's is set for the matrix
products of the ViT's linear layers. The caps go through the libraries' own environment variables, read
when their first kernel runs, so `cap_cpu_isa` runs when the package is imported; a value already in the
environment is kept (set ATEN_CPU_CAPABILITY and ONEDNN_MAX_CPU_ISA yourself for wider kernels, whose
numbers differ from other machines'). Such a setting, or a CPU other than x86-64, is named by
`kernel_tag`, which the code version and the cached models' names include: its runs and models never
mix with the capped ones in a store or a cache folder. GPU kernels are not affected; numpy's BLAS is
not capped (the corruptions avoid matrix products instead).
"""
from __future__ import annotations

import os
import platform

CAPS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
X86_64 = ("x86_64", "amd64")


def is_x86_64() -> bool:
    """Whether this CPU is x86-64, the architecture the caps are for."""
    return platform.machine().lower() in X86_64


def kernel_tag() -> str:
    """'' for the capped x86-64 kernels; else what differs: the CPU architecture, or the caps set otherwise."""
    if not is_x86_64():
        return platform.machine().lower()
    return ",".join(f"{name}={os.environ[name]}" for name in sorted(CAPS)
                    if os.environ.get(name, CAPS[name]).lower() != CAPS[name].lower())


def cap_cpu_isa() -> None:
    """Set each cap in CAPS unless the environment already names one (x86-64 only: other CPUs have no AVX)."""
    if is_x86_64():
        for name, value in CAPS.items():
            os.environ.setdefault(name, value)
