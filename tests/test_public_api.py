"""The public Python API works as README documents it: the README example runs, and its records are
the CLI's."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import autoft_core
from autoft_core import store as store_module
from autoft_core.cli import main
from autoft_core.core.recipe import TaskSpec
from autoft_core.errors import AutoFTError, BadArgumentError
from autoft_core.paths import DataPaths
from autoft_core.setups import get_setup, setup_names

README = Path(__file__).resolve().parent.parent / "README.md"
pytestmark = pytest.mark.usefixtures("one_thread")


def _readme_example() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(store_module, "default_store_path", lambda: tmp_path / "results.sqlite")
    exec(compile(_readme_example(), "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    model = autoft_core.pretrained_model("digits", "output")
    assert printed[1] == str([layer.name for layer in autoft_core.layer_partition(model, "block")])
    weights = eval(printed[2])  # noqa: S307 (our own printed dict)
    assert list(weights) == [layer.name for layer in autoft_core.layer_partition(model)]
    assert printed[3].endswith("False") and (tmp_path / "results.sqlite").is_file()


def test_run_record_is_stored_and_found_again(monkeypatch, tmp_path):
    monkeypatch.setattr(store_module, "default_store_path", lambda: tmp_path / "results.sqlite")
    first = autoft_core.run("digits", "output", "linear-probe", epochs=1, shots=50)
    again = autoft_core.run("digits", "output", "linear-probe", epochs=1, shots=50)
    assert first["cached"] is False and again["cached"] is True
    assert {k: v for k, v in again.items() if k not in ("cached", "seconds")} == \
           {k: v for k, v in first.items() if k not in ("cached", "seconds")}


def test_the_api_s_record_is_the_cli_s(tmp_path, capsys):
    store = tmp_path / "results.sqlite"
    record = autoft_core.run("digits", "output", "linear-probe", epochs=1, shots=50, store=store)
    capsys.readouterr()
    assert main(["finetune", "--setup", "digits", "--shift", "output", "--method", "linear-probe", "--epochs", "1",
                 "--shots", "50", "--store", str(store), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["cached"] is True and record["cached"] is False  # the CLI found the API's run
    assert {k: v for k, v in printed.items() if k not in ("cached", "seconds")} == \
           {k: v for k, v in record.items() if k not in ("cached", "seconds")}


def test_partition_names_index_named_parameters():
    model = autoft_core.pretrained_model("digits", "output")
    layers = autoft_core.layer_partition(model)
    names = [p for layer in layers for p in layer.param_names]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())


def test_bad_settings_are_refused_by_name():
    with pytest.raises(BadArgumentError, match="lr"):
        autoft_core.run("digits", "output", "full", lr=-1.0)
    with pytest.raises(BadArgumentError, match="setting"):
        autoft_core.load_task("digits", "output", epochz=3)


def test_mistakes_the_cli_refuses_are_refused_by_the_api_too(monkeypatch, tmp_path):
    with pytest.raises(AutoFTError, match="momentum applies to optimizer sgd only"):
        autoft_core.run("digits", "output", "full", epochs=1, momentum=0.5)
    with pytest.raises(BadArgumentError, match="setup None"):
        autoft_core.load_task(None)
    with pytest.raises(BadArgumentError, match="shift for setup digits 'nope'"):
        autoft_core.pretrained_model("digits", "nope")
    with pytest.raises(BadArgumentError, match="a torch.nn.Module"):
        autoft_core.layer_partition("digits")
    with pytest.raises(BadArgumentError, match="from 1 to 5"):
        autoft_core.run("digits", "input", "full", corruption="frost", severity=9)
    with pytest.raises(AutoFTError, match="corruption applies to the input shift only, not output"):
        autoft_core.run("digits", "output", "full", corruption="frost")  # used to drop the corruption unseen


@pytest.mark.parametrize("name", setup_names())
def test_every_setup_refuses_a_shift_it_does_not_offer_before_building_a_model(name):
    setup = get_setup(name, DataPaths())  # no data anywhere: the shift is checked first
    offered = setup.shifts_help or ", ".join(setup.shifts)
    with pytest.raises(BadArgumentError, match=re.escape(f"shift for setup {name} 'sideways'; valid: {offered}")):
        setup.source_model("sideways")
    with pytest.raises(BadArgumentError, match=re.escape(f"shift for setup {name} 'sideways'")):
        setup.check(TaskSpec("sideways"))


def test_a_store_may_be_given_as_the_path_of_its_file(tmp_path):
    path = tmp_path / "mine.sqlite"
    first = autoft_core.run("digits", "output", "linear-probe", epochs=1, shots=50, store=str(path))
    again = autoft_core.run("digits", "output", "linear-probe", epochs=1, shots=50, store=path)
    assert first["cached"] is False and again["cached"] is True and path.is_file()
