"""`export` writes a task as plain files; recomputing Auto-RGN from those files alone, with plain torch,
gives the engine's scores."""
from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from autoft_core.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_exported_task_reproduces_auto_rgn_weights(tmp_path, capsys):
    task_args = ["--setup", "digits", "--shift", "output", "--seed", "1"]
    assert main(["export", *task_args, "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["weights", *task_args, "--method", "auto-rgn", "--param", "batches=all", "--json",
                 "--device", "cpu"]) == 0
    engine = json.loads(capsys.readouterr().out)

    task = json.loads((tmp_path / "task.json").read_text())
    arrays = np.load(tmp_path / "task.npz")
    module, name = task["model_class"].rsplit(".", 1)
    state = load_file(str(tmp_path / "model.safetensors"))
    width, features = state["stem.conv.weight"].shape[0], state["head.weight"].shape[1]  # its other arguments
    model = getattr(importlib.import_module(module), name)(num_classes=int(arrays["num_classes"]), width=width,
                                                          features=features)
    model.load_state_dict(state)
    model.eval()
    x, y = torch.from_numpy(arrays["train_x"]), torch.from_numpy(arrays["train_y"])
    F.cross_entropy(model(x), y).backward()  # the exact gradient over the whole target train split
    named = dict(model.named_parameters())
    partition = json.loads((tmp_path / "partition.json").read_text())
    expected = []
    for params in partition.values():
        grad = torch.cat([named[p].grad.flatten() for p in params]).double().norm()
        theta = torch.cat([named[p].detach().flatten() for p in params]).double().norm()
        expected.append(float(grad / theta))
    assert engine["layers"] == list(partition)
    np.testing.assert_allclose(engine["scores"], expected, rtol=1e-6)
    assert {k: task[k] for k in ("shift", "seed", "granularity")} == {"shift": "output", "seed": 1,
                                                                       "granularity": "module"}
    assert arrays["source_x"].shape[1:] == (3, 32, 32) and arrays["test_y"].dtype == np.int64


def test_an_export_that_fails_midway_leaves_nothing_half_written(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "task.json").write_text("the previous export's")

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)  # numpy's attribute: nothing binds it at import and keeps it
    assert main(["export", "--setup", "digits", "--shift", "output", "--shots", "20", "--out", str(out)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["task.json"]
    assert (out / "task.json").read_text() == "the previous export's"


@pytest.mark.parametrize("make, phrase", [
    (lambda out: out.write_text("a file"), "is a file"),
    (lambda out: (out / "task.json").mkdir(parents=True), "is a folder where the export writes a file"),
])
def test_export_refuses_an_out_it_cannot_fill_before_computing_anything(tmp_path, capsys, make, phrase):
    out = tmp_path / "out"
    make(out)
    assert main(["export", "--setup", "digits", "--shift", "output", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert phrase in err and err.count("\n") == 1
