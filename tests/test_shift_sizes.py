"""`shifts`: each shift's zero-shot accuracy beside the clean accuracy, checked on a tiny setup by hand."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from autoft_core import shift_sizes
from autoft_core.cli import main
from autoft_core.data.corruptions import corrupt
from autoft_core.core.data import Split, TaskData
from autoft_core.core.recipe import Recipe
from autoft_core.setups import Setup, TaskSpec


class _TinySetup(Setup):
    """Random 4-class images; two corruptions; models are fixed random linear classifiers per shift."""

    name = "tiny"
    description = "test"
    recipe = Recipe(shots=8, epochs=1, lr=1e-3)

    def corruptions(self) -> tuple[str, ...]:
        return ("gaussian_noise", "pixelate")

    def missing(self) -> list[str]:
        return []

    def task(self, spec: TaskSpec) -> TaskData:
        spec = self.check(spec)
        g = torch.Generator().manual_seed(spec.seed)
        x, y = torch.rand(40, 3, 8, 8, generator=g), torch.randint(0, 4, (40,), generator=g)
        if spec.shift == "input":
            x = corrupt(x, spec.corruption, spec.severity, seed=spec.seed)
        if spec.shift == "output":
            y = 3 - y
        split = Split(x, y)
        return TaskData(source=split, train=split, val=split, test=split, num_classes=4)

    def _source_model(self, shift: str) -> nn.Module:
        torch.manual_seed(1 if shift == "feature" else 0)
        return nn.Sequential(nn.Flatten(), nn.Linear(192, 4)).eval()


def _independent_accuracy(model: nn.Module, split: Split) -> float:
    with torch.no_grad():
        return float((model(split.x).argmax(dim=1) == split.y).double().mean())


@pytest.fixture
def tiny(monkeypatch) -> _TinySetup:
    setup = _TinySetup()
    monkeypatch.setattr(shift_sizes, "get_setup", lambda name, paths=None: setup)
    return setup


def test_json_lists_every_shift_and_corruption_with_independently_recomputed_accuracies(tiny, capsys):
    assert main(["shifts", "--setup", "tiny", "--severity", "3", "--seed", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"setup", "clean_acc", "tasks"} and out["setup"] == "tiny"
    clean = tiny.task(TaskSpec("output", seed=2)).test
    flipped = Split(clean.x, 3 - clean.y)
    assert out["clean_acc"] == pytest.approx(_independent_accuracy(tiny.source_model("output"), flipped))
    expected = [("input", "gaussian_noise", 3), ("input", "pixelate", 3), ("feature", None, None),
                ("output", None, None)]
    assert [(t["shift"], t["corruption"], t["severity"]) for t in out["tasks"]] == expected
    for row in out["tasks"]:
        assert set(row) == {"shift", "corruption", "severity", "zero_shot_acc"}
        test = tiny.task(TaskSpec(row["shift"], row["corruption"], row["severity"] or 5, seed=2)).test
        assert row["zero_shot_acc"] == pytest.approx(_independent_accuracy(tiny.source_model(row["shift"]), test))


def test_the_table_shows_the_clean_accuracy_and_each_task(tiny, capsys):
    assert main(["shifts", "--setup", "tiny"]) == 0
    text = capsys.readouterr().out
    clean = shift_sizes.shift_sizes("tiny")["clean_acc"]
    assert f"{100 * clean:.1f}%" in text and "gaussian_noise" in text and "pixelate" in text


@pytest.mark.parametrize("argv", [["--severity", "6"], ["--seed", "-1"]])
def test_bad_arguments_exit_2(argv):
    with pytest.raises(SystemExit) as exc:
        main(["shifts", *argv])
    assert exc.value.code == 2
