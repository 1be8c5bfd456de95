"""The engine caps torch's CPU kernels at AVX2 and names the CPU in every key (cpu_isa.py)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from autoft_core.cpu_isa import CAPS, cpu_model, is_x86_64

pytestmark = pytest.mark.skipif(not is_x86_64(), reason="the caps are x86-64 instruction sets")

# A few Adam steps of a small conv net on one thread; prints a digest of the weights and the kernels' ISA.
TRAIN = """
import hashlib, torch{first}
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                          torch.nn.Conv2d(8, 16, 3, stride=2), torch.nn.ReLU(), torch.nn.Flatten(),
                          torch.nn.Linear(16 * 15 * 15, 10))
with torch.no_grad():
    for p in net.parameters():
        p.copy_(torch.randn(p.shape, generator=g) * 0.1)
x, y = torch.rand(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g)
opt = torch.optim.Adam(net.parameters(), lr=1e-2)
for _ in range(5):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
print(hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in net.parameters())).hexdigest(),
      torch.backends.cpu.get_cpu_capability())
"""


def _train(env: dict[str, str], first: str) -> tuple[str, str]:
    """(weights digest, ATen's CPU capability) of TRAIN in a fresh process with `env` over a cap-free one."""
    base = {k: v for k, v in os.environ.items() if k not in CAPS}
    out = subprocess.run([sys.executable, "-c", TRAIN.format(first=first)], env={**base, **env},
                         capture_output=True, text=True, timeout=120, check=True).stdout.split()
    return out[0], out[1]


def test_importing_the_engine_gives_the_numbers_of_an_explicit_avx2_cap_even_after_torch():
    pinned, capability = _train({}, "\nimport autoft_core")  # imported after torch, before any kernel
    explicit, _ = _train(dict(CAPS), "")
    assert capability == "AVX2" and pinned == explicit


def test_a_cap_already_in_the_environment_is_kept():
    native, capability = _train({"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "ALL"}, "\nimport autoft_core")
    if capability != "AVX512":
        pytest.skip("this CPU has no AVX-512: the wider kernels cannot be compared")
    assert native != _train({}, "\nimport autoft_core")[0]  # on this CPU the cap is what makes the numbers agree


KEY = "from autoft_core.config import RunConfig; print(RunConfig().key())"


def _key(env: dict[str, str]) -> str:
    """A default run's store key in a fresh process with `env` over a cap-free environment."""
    base = {k: v for k, v in os.environ.items() if k not in CAPS}
    return subprocess.run([sys.executable, "-c", KEY], env={**base, **env}, capture_output=True, text=True,
                          timeout=120, check=True).stdout.strip()


def test_other_kernels_give_other_store_keys_and_the_caps_spelt_otherwise_the_same():
    default = _key({})
    assert _key({"ATEN_CPU_CAPABILITY": "AVX2", "ONEDNN_MAX_CPU_ISA": "avx2"}) == default  # the caps, other case
    assert _key({"ATEN_CPU_CAPABILITY": "avx512"}) != default
    assert _key({"ONEDNN_MAX_CPU_ISA": "ALL"}) not in (default, _key({"ATEN_CPU_CAPABILITY": "avx512"}))


def test_kernel_tag_names_each_cap_set_otherwise(monkeypatch):
    from autoft_core.cpu_isa import kernel_tag

    for name, value in CAPS.items():
        monkeypatch.setenv(name, value)
    cpu = f"cpu={cpu_model()}"
    assert kernel_tag() == cpu
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    assert kernel_tag() == f"{cpu},ATEN_CPU_CAPABILITY=default,ONEDNN_MAX_CPU_ISA=ALL"


def test_the_cpu_model_is_read_from_cpuinfo_and_names_the_key(monkeypatch, tmp_path):
    from autoft_core import cpu_isa
    from autoft_core.models.weights_cache import cached_path

    first = next(block for block in open("/proc/cpuinfo").read().split("\n\n") if block.strip())
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first.splitlines() if ":" in line)}
    assert cpu_isa.cpu_model() == f"{fields['vendor_id']}-{fields['cpu family']}-{fields['model']}"
    monkeypatch.setenv("AUTOFT_CACHE", str(tmp_path))
    here = cached_path("digits-standard", {"epochs": 5})
    monkeypatch.setattr(cpu_isa, "cpu_model", lambda: "AuthenticAMD-25-17")
    assert cached_path("digits-standard", {"epochs": 5}) != here
    assert _key({}) != subprocess.run(  # another CPU: another store key, in a fresh process
        [sys.executable, "-c", "from autoft_core import cpu_isa; cpu_isa.cpu_model = lambda: 'AuthenticAMD-25-17'; "
         "from autoft_core.config import RunConfig; print(RunConfig().key())"],
        env={**{k: v for k, v in os.environ.items() if k not in CAPS}, "AUTOFT_CACHE": str(tmp_path / "other")},
        capture_output=True, text=True, timeout=120, check=True).stdout.strip()


def test_a_model_trained_on_other_kernels_is_cached_under_another_name(monkeypatch, tmp_path):
    from autoft_core.models.weights_cache import cached_path

    monkeypatch.setenv("AUTOFT_CACHE", str(tmp_path))
    for name, value in CAPS.items():
        monkeypatch.setenv(name, value)
    capped = cached_path("digits-standard", {"epochs": 5})
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx512")
    assert cached_path("digits-standard", {"epochs": 5}) != capped
    assert cached_path("digits-standard", {"epochs": 5}).parent == capped.parent
