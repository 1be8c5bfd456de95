"""The command line contract: JSON output, cache hits, one-line errors with exit code 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autoft_core.layers import partition
from autoft_core.setups import get_setup

REPO = Path(__file__).resolve().parent.parent


def torch_sees_a_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autoft_core", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def test_finetune_json_then_cache_hit_with_the_same_numbers(tmp_path):
    args = ("finetune", "--setup", "digits", "--shift", "output", "--method", "full", "--json", "--epochs", "2",
            "--shots", "100", "--store", str(tmp_path / "r.sqlite"))
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    a = json.loads(first.stdout)
    assert a["cached"] is False and a["test_acc"] > a["zero_shot_acc"]  # the flip is learnt from ~0
    layers = len(partition(get_setup("digits").source_model("output")))
    assert len(a["param_change"]) == len(a["layers"]) == len(a["weights"]) == layers and len(a["history"]) == 2
    second = cli(*args)
    b = json.loads(second.stdout)
    assert b["cached"] is True
    assert {k: b[k] for k in ("test_acc", "zero_shot_acc", "param_change", "history")} == \
           {k: a[k] for k in ("test_acc", "zero_shot_acc", "param_change", "history")}


def test_weights_json_has_the_contract_keys():
    out = cli("weights", "--setup", "digits", "--shift", "output", "--method", "linear-probe", "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert set(got) == {"method", "layers", "scores", "weights", "extras"}
    assert got["weights"][-1] == 1.0 and sum(got["weights"]) == 1.0


@pytest.mark.parametrize("args, needle", [
    (("weights", "--method", "nope"), "valid: full"),
    (("weights", "--setup", "mnist"), "valid: digits, cifar10"),
    (("weights", "--shift", "input", "--corruption", "fog"), "valid: frost"),
    (("finetune", "--epochs", "-2"), "--epochs"),
    (("finetune", "--lr", "abc"), "--lr"),
    (("weights", "--method", "full", "--param", "x=1"), "parameter for method full"),
    (("weights", "--granularity", "neuron"), "valid: module, block"),
    (("finetune", "--setup", "cifar10", "--shift", "input", "--corruption", "frost",
      "--cifar10-dir", "/nonexistent/c10", "--cifar10c-dir", "/nonexistent/c10c"), "not found at /nonexistent/"),
    (("weights", "--shift", "output", "--corruption", "frost"),
     "corruption applies to the input shift only, not output"),
    (("shots", "--shift", "feature", "--corruption", "frost"),
     "corruption applies to the input shift only, not feature"),
    (("sweep", "--shifts", "output", "--corruptions", "frost"), "--corruptions applies to the input shift only"),
    (("finetune", "--optimizer", "adam", "--momentum", "0.5"), "momentum applies to optimizer sgd only, not adam"),
    (("grid", "--method", "criticality-identity", "--values", "topk=1,,2"), "none empty"),
    (("grid", "--method", "criticality-identity", "--values", "topk="), "none empty"),
    (("finetune", "--store", ""), "--store: needs a file name"),
    (("table", "--out", "/nonexistent/folder/t.md"), "does not exist"),
    (("table", "--out", "x" * 300), "File name too long"),
    (("export", "--out", ""), "needs a folder name"),
    (("shifts", "--setup", "folder", "--source-dir", "/nonexistent"), "needs --target-dir"),
    (("finetune", "--device", "tpu"), "unknown device 'tpu'; valid: auto, cpu, cuda, cuda:N"),
    (("sweep", "--methods", "full", "--shifts", "output", "--device", "cuda1"), "unknown device 'cuda1'"),
])
def test_bad_input_exits_2_with_one_line_and_no_traceback(args, needle):
    out = cli(*args)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip() and "Warning" not in line
             and not line.startswith(" ")]
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_setups_lists_every_setup_and_what_is_missing():
    out = cli("setups", "--json", env={"AUTOFT_CIFAR10C_DIR": "/nonexistent/c10c"})
    rows = {row["setup"]: row for row in json.loads(out.stdout)}
    assert set(rows) == {"digits", "cifar10", "breeds-living17", "breeds-entity30", "digits-vit", "folder"}
    assert rows["digits"]["ready"] and rows["digits-vit"]["ready"] and not rows["cifar10"]["ready"]
    assert any("--source-dir" in line for line in rows["folder"]["missing"])
    assert any("/nonexistent/c10c" in line for line in rows["cifar10"]["missing"])


def test_methods_lists_names_and_parameters():
    out = cli("methods", "--json")
    rows = {row["method"]: row for row in json.loads(out.stdout)}
    assert {"full", "linear-probe"} <= set(rows)
    assert all(row["summary"] for row in rows.values())


@pytest.mark.skipif(torch_sees_a_gpu(), reason="a GPU is visible here")
def test_a_sweep_asking_for_a_missing_gpu_stops_before_any_run(tmp_path):
    store = tmp_path / "r.sqlite"
    out = cli("sweep", "--methods", "full", "--shifts", "output", "--seeds", "8", "--epochs", "1", "--device", "cuda",
              "--store", str(store))
    assert out.returncode == 2 and "no CUDA GPU is visible" in out.stderr and "FAILED" not in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_a_closed_pipe_ends_quietly_and_a_full_disk_with_one_line():
    read, write = os.pipe()
    os.close(read)  # the reader has gone, as after `| head -1`
    closed = subprocess.run([sys.executable, "-m", "autoft_core", "methods"], cwd=REPO, stdout=write,
                            stderr=subprocess.PIPE, text=True, timeout=600)
    os.close(write)
    assert closed.returncode == 0 and closed.stderr == "", closed.stderr
    with open("/dev/full", "w") as full:
        out = subprocess.run([sys.executable, "-m", "autoft_core", "methods", "--json"], cwd=REPO, stdout=full,
                             stderr=subprocess.PIPE, text=True, timeout=600)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "No space left on device" in out.stderr, out.stderr


def test_a_cache_folder_that_cannot_be_one_is_named_in_one_line(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    out = cli("methods", env={"AUTOFT_CACHE": str(not_a_folder)})
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert f"cannot use {not_a_folder} as the cache folder (it is a file); set AUTOFT_CACHE" in out.stderr
