"""Device settings: the GPU peak by card variant, evaluation batch sizes, content digests, pinned threads."""
from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from autoft_core import device as device_module
from autoft_core import digest as digest_module
from autoft_core.device import (AUTOTUNE_ENV, THREADS_ENV, peak_bf16_flops, pinned_threads, prepare_model,
                                run_threads, spare_cpu_core)
from autoft_core.digest import device_sums, model_digest, tensor_digest
from autoft_core.evaluation import eval_batch


def test_h100_variants_get_their_own_peak():
    sxm, pcie, nvl = (peak_bf16_flops(f"NVIDIA H100 {v}") for v in ("80GB HBM3", "PCIe", "NVL"))
    assert pcie < nvl < sxm
    assert peak_bf16_flops("NVIDIA A100-SXM4-80GB") < pcie
    assert peak_bf16_flops("Some Future GPU") is None


def test_evaluation_batches_are_powers_of_two_and_smaller_for_larger_images():
    for device in (torch.device("cpu"), torch.device("cuda")):
        sizes = [eval_batch(torch.empty(1, 3, side, side), device) for side in (32, 64, 224)]
        assert sizes == sorted(sizes, reverse=True)
        assert all(s & (s - 1) == 0 for s in sizes)
    assert eval_batch(torch.empty(1, 3, 32, 32), torch.device("cuda")) > eval_batch(torch.empty(1, 3, 32, 32),
                                                                                    torch.device("cpu"))


def test_digests_follow_content_not_identity():
    a = torch.arange(12.0).reshape(3, 4)
    same, reshaped = a.clone(), a.clone().reshape(4, 3)
    assert tensor_digest(a) == tensor_digest(same) != tensor_digest(reshaped)
    before = tensor_digest(a)
    a[0, 0] += 1  # in place: the remembered digest must not be served
    assert tensor_digest(a) != before
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    copy = nn.Linear(3, 2)
    copy.load_state_dict(net.state_dict())
    assert model_digest(net) == model_digest(copy)
    with torch.no_grad():
        copy.bias[0] += 1e-6
    assert model_digest(net) != model_digest(copy)


def test_channels_last_preparation_keeps_the_function():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    x = torch.rand(2, 3, 8, 8)
    expected = net(x)
    prepared = prepare_model(net, torch.device("cpu"))
    assert prepared[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(prepared(x), expected, rtol=1e-5, atol=1e-6)


def test_cudnn_autotuning_is_on_only_when_asked(monkeypatch):
    """A process's first CUDA run pays a cuDNN search per new batch shape (device.py): off unless the
    environment asks; a module with no tensors is placed without a GPU, so the flag is all that changes."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    cuda = torch.device("cuda")
    monkeypatch.delenv(AUTOTUNE_ENV, raising=False)
    prepare_model(nn.Identity(), cuda)
    assert torch.backends.cudnn.benchmark is False
    monkeypatch.setenv(AUTOTUNE_ENV, "1")
    prepare_model(nn.Identity(), cuda)
    assert torch.backends.cudnn.benchmark is True
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    prepare_model(nn.Identity(), torch.device("cpu"))  # the CPU never touches it, asked or not
    assert torch.backends.cudnn.benchmark is False


def test_a_small_strided_1x1_conv_stays_nchw_on_the_cpu_and_trains():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 8, 1, stride=2))  # torch's channels_last bug
    prepared = prepare_model(net, torch.device("cpu"))
    assert all(p.is_contiguous() for p in prepared.parameters())
    prepared[0].requires_grad_(False)
    x = torch.rand(8, 3, 16, 16)
    for _ in range(20):  # in channels_last these weight gradients corrupt the heap and abort the process
        prepared(x).sum().backward()
    assert prepared[1].weight.grad is not None and torch.isfinite(prepared[1].weight.grad).all()


def test_pinned_threads_override_the_policy_and_are_undone(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    small = nn.Linear(2, 2)
    assert run_threads(small, torch.device("cpu")) == 1
    with pinned_threads(3):
        assert run_threads(small, torch.device("cpu")) == 3
    assert THREADS_ENV not in os.environ
    with pinned_threads(None):
        assert run_threads(small, torch.device("cpu")) == 1


def test_evaluation_goes_beside_training_only_on_a_cpu_run_that_leaves_a_core_and_is_not_pinned(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setattr(device_module, "cpu_count", lambda: 4)
    try:
        decisions = {}
        for threads in (1, 3, 4):
            torch.set_num_threads(threads)
            decisions[threads] = spare_cpu_core(torch.device("cpu"))
        assert decisions == {1: True, 3: True, 4: False}
        torch.set_num_threads(1)
        assert not spare_cpu_core(torch.device("cuda"))  # the GPU evaluates; CPU threads would not help
        with pinned_threads(1):  # a sweep worker: its share of the cores is all it gets
            assert not spare_cpu_core(torch.device("cpu"))
        assert spare_cpu_core(torch.device("cpu"))
    finally:
        torch.set_num_threads(before)


def test_device_sums_are_the_bytes_end_to_end_whatever_the_chunking(monkeypatch):
    """The device path of the digests (run here on CPU tensors): tensors laid end to end, then the plain and
    the position-weighted sum of the bytes read as int32, as NumPy computes them; chunking changes nothing."""
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (1000,), dtype=torch.uint8, generator=g)
    b = torch.randint(0, 256, (68,), dtype=torch.uint8, generator=g)
    ints = np.concatenate([a.numpy(), b.numpy()]).view("<i4").astype(np.int64)
    expected = str([int(ints.sum()), int((ints * np.arange(1, len(ints) + 1)).sum())])
    assert device_sums([a, b]) == expected
    monkeypatch.setattr(digest_module, "SUM_CHUNK", 7)
    assert device_sums([a, b]) == expected
    swapped = b.clone()
    swapped[[0, 4]] = swapped[[4, 0]]  # the same bytes in another order: the weighted sum sees it
    assert swapped[0] != swapped[4] and device_sums([a, swapped]) != expected
