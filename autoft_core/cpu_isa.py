"""Torch's CPU kernels capped at AVX2 on x86-64, and the CPU named in every key: numbers computed on
one CPU model are never mixed with another's.

ATen's vectorised kernels and oneDNN's convolutions each use the widest instruction set the CPU offers
(AVX-512 on some of our machines, AVX2 on others), and the wider kernels add in another order: on an
AVX-512 EPYC (2026-11-26) the pretrained digits model came out different and all 42 cells of Table 1
moved (by 2.0 points at the median, 45.6 at most); capped at AVX2, the same machine gave the earlier
(AVX2 EPYC) machines' accuracies digit for digit. Either cap alone was not enough; MKL's is set for the
matrix products of the ViT's linear layers. The caps go through the libraries' own environment
variables, read when their first kernel runs, so `cap_cpu_isa` runs when the package is imported; a
value already in the environment is kept (set ATEN_CPU_CAPABILITY and ONEDNN_MAX_CPU_ISA yourself for
wider kernels). The caps do not make every CPU agree: on an Intel Xeon (family 6, model 207, 2026-11-28)
the capped kernels trained another digits model than the AMD EPYCs', and every cell of Table 1 moved
(oneDNN and MKL choose their kernels and blockings by vendor and cache sizes too: on that machine
MKL_CBWR=COMPATIBLE or oneDNN capped at AVX gives yet other weights). So `kernel_tag` names the CPU
(vendor, family, model) and any cap set otherwise; the code version and the cached models' names
include it: runs and models of another CPU never mix with these in a store or a cache folder. GPU
kernels are not affected; numpy's BLAS is not capped (the corruptions avoid matrix products instead).
"""
from __future__ import annotations

import os
import platform
from functools import cache

CAPS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
X86_64 = ("x86_64", "amd64")


def is_x86_64() -> bool:
    """Whether this CPU is x86-64, the architecture the caps are for."""
    return platform.machine().lower() in X86_64


@cache
def cpu_model() -> str:
    """The CPU as vendor-family-model (x86-64 Linux: /proc/cpuinfo's first processor), else the
    platform's own description of it (the architecture when it has none)."""
    try:
        with open("/proc/cpuinfo") as info:
            fields = dict(line.split(":", 1) for line in info.read().split("\n\n")[0].splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        return f"{fields['vendor_id']}-{fields['cpu family']}-{fields['model']}"
    except (OSError, KeyError, ValueError):
        return platform.processor() or platform.machine().lower()


def kernel_tag() -> str:
    """The CPU (`cpu_model`) and, on x86-64, every cap set otherwise than CAPS: what else decides the
    CPU kernels' numbers."""
    caps = [f"{name}={os.environ[name]}" for name in sorted(CAPS)
            if is_x86_64() and os.environ.get(name, CAPS[name]).lower() != CAPS[name].lower()]
    return ",".join([f"cpu={cpu_model()}", *caps])


def cap_cpu_isa() -> None:
    """Set each cap in CAPS unless the environment already names one (x86-64 only: other CPUs have no AVX)."""
    if is_x86_64():
        for name, value in CAPS.items():
            os.environ.setdefault(name, value)
