"""`--setup python:module:function`: the README's example module, written to a temporary folder, runs
through the CLI with its own layer partition; broken entry points give one clear line."""
from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

from autoft_core import api
from autoft_core.cli import main
from autoft_core.store import ResultStore

pytestmark = pytest.mark.usefixtures("one_thread")
README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    return next(b for b in blocks if "def make_setup" in b)


def _module(tmp_path: Path, monkeypatch, name: str, text: str) -> str:
    """Write a module on a fresh sys.path entry (unique names: imports and entries are cached per process)."""
    (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def test_the_readme_example_runs_with_its_layers_and_is_stored(tmp_path, monkeypatch, capsys):
    module = _module(tmp_path, monkeypatch, "readme_setup", _readme_example())
    store = tmp_path / "r.sqlite"
    argv = ["finetune", "--setup", f"python:{module}:make_setup", "--shift", "feature", "--method", "auto-rgn",
            "--epochs", "3", "--json", "--store", str(store)]
    assert _main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layers"] == ["hidden", "head"] and len(out["weights"]) == 2 and max(out["weights"]) == 1
    assert ResultStore(store).frame().iloc[0]["setup"] == f"python:{module}:make_setup"
    assert _main(argv) == 0 and json.loads(capsys.readouterr().out)["cached"] is True
    data = api.load_task(f"python:{module}:make_setup", "feature", shots=10)
    assert len(data.train) == 10 and sorted(data.train.y.tolist()) == [0] * 5 + [1] * 5  # shots drawn, balanced


def test_a_function_of_the_spec_gets_the_shift_and_seed(tmp_path, monkeypatch):
    text = _readme_example().replace('tasks={"feature": target}', "tasks=lambda spec: aft.TaskData("
                                     "source, blobs(8, 3.0 * (spec.shift == 'output'), spec.seed), target.val, "
                                     "target.test, 2)")
    module = _module(tmp_path, monkeypatch, "spec_setup", text)
    data = {shift: api.load_task(f"python:{module}:make_setup", shift, seed=4) for shift in ("feature", "output")}
    assert (data["output"].train.x.mean() - data["feature"].train.x.mean()).item() == pytest.approx(3.0, abs=0.5)
    made = importlib.import_module(module).blobs(8, 0.0, 4)  # the function's own data for seed 4
    rows = lambda x: sorted(map(tuple, x.tolist()))  # noqa: E731 (the task may reorder its training images)
    assert rows(data["feature"].train.x) == rows(made.x)
    assert rows(api.load_task(f"python:{module}:make_setup", "feature", seed=5).train.x) != rows(made.x)


@pytest.mark.parametrize("case, phrase", [
    ("python:no.colon", "python:package.module:function"),
    ("python:no_such_module_xyz:make_setup", "cannot import module no_such_module_xyz"),
    ("python:{module}:nothing_here", "has no function nothing_here"),
    ("python:{module}:wrong_type", "returned a dict"),
    ("python:{module}:bad_layers", "do not partition the model"),
    ("python:{module}:needs_an_argument", "needs_an_argument() raised TypeError"),
    ("python:{module}:raises", "raises() raised ValueError: no data here"),
    ("python:{module}:exits", "exits() exited (status 3)"),
    ("python:{module}:labels_out_of_range", "train labels run from 5 to 6, outside 0 to num_classes - 1 = 1"),
    ("python:{module}:float_labels", "train labels are torch.float32; make them integers"),
    ("python:{module}:wrong_inputs", "the model rejects the feature task's inputs of shape (8,) (RuntimeError: "),
    ("python:{module}:wrong_outputs", "the model gives (2, 3) for 2 examples of the feature task, not (2, 2)"),
])
def test_broken_entry_points_give_one_clear_line_and_exit_2(case, phrase, tmp_path, monkeypatch, capsys):
    module = _module(tmp_path, monkeypatch, f"broken_{abs(hash(case)) % 10**8}", _readme_example() + '''

def wrong_type():
    return {"model": None}


def needs_an_argument(path):
    return make_setup()


def raises():
    raise ValueError("no data here\\nsecond line")


def exits():
    raise SystemExit(3)


def bad_layers():
    made = make_setup()
    return aft.CustomSetup(model=made.model, tasks=made.tasks, layers=[("only_the_head", ["2"])])


def _with(train=None, model=None):
    made = make_setup()
    task = made.tasks["feature"]
    return aft.CustomSetup(model=model or made.model, tasks={"feature": aft.TaskData(
        task.source, train or task.train, task.val, task.test, task.num_classes)})


def labels_out_of_range():
    train = make_setup().tasks["feature"].train
    return _with(train=aft.Split(train.x, train.y + 5))


def float_labels():
    train = make_setup().tasks["feature"].train
    return _with(train=aft.Split(train.x, train.y.float()))


def wrong_inputs():
    return _with(model=nn.Sequential(nn.Linear(5, 2)))


def wrong_outputs():
    return _with(model=nn.Sequential(nn.Linear(8, 3)))
''')
    code = _main(["weights", "--setup", case.format(module=module), "--shift", "feature", "--method", "full"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and phrase in err, err


@pytest.mark.parametrize("body, phrase", [
    ("def make_setup(:\n", "raised SyntaxError: "),
    ("raise RuntimeError('no GPU here')\n", "raised RuntimeError: no GPU here; fix the module"),
])
def test_a_module_that_fails_to_import_gives_one_clear_line_and_exit_2(body, phrase, tmp_path, monkeypatch, capsys):
    module = _module(tmp_path, monkeypatch, f"unimportable_{abs(hash(body)) % 10**8}", body)
    code = _main(["weights", "--setup", f"python:{module}:make_setup", "--shift", "feature", "--method", "full"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"importing module {module} {phrase}" in err, err
