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
from autoft_core.errors import AutoFTError
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
    ("python:{module}:overlapping_layers", "layers hidden and head of Sequential claim the same parameters "
                                           "['2.weight']: put each parameter in one layer only"),
    ("python:{module}:needs_an_argument", "needs_an_argument() raised TypeError"),
    ("python:{module}:raises", "raises() raised ValueError: no data here"),
    ("python:{module}:exits", "exits() exited (status 3)"),
    ("python:{module}:labels_out_of_range", "train labels run from 5 to 6, outside 0 to num_classes - 1 = 1"),
    ("python:{module}:float_labels", "train labels are torch.float32; make them integers"),
    ("python:{module}:wrong_inputs", "the model rejects the feature task's inputs of shape (8,) (RuntimeError: "),
    ("python:{module}:wrong_outputs", "the model gives (2, 3) for 2 examples of the feature task, not (2, 2)"),
    ("python:{module}:tasks_raise", "tasks(spec) raised ValueError: nope; it must return autoft_core.TaskData"),
    ("python:{module}:tasks_refuse", "error: setup python:elsewhere: bring the data first\n"),
    ("python:{module}:numpy_split", "train split holds a ndarray and a ndarray: its x and y must be torch tensors"),
    ("python:{module}:lambda_model", "its model is a function, not a torch.nn.Module"),
    ("python:{module}:no_parameters", "the model has no parameters to fine-tune"),
    ("python:{module}:string_layers", "its layers are a str; give a list of (name, [module or parameter name"),
    ("python:{module}:names_as_layers", "its layers[0] is a str, not a (name, [prefixes]) pair"),
    ("python:{module}:string_recipe", "its recipe is a str, not an autoft_core.Recipe"),
    ("python:{module}:empty_test", "the feature task's test split is empty"),
    ("python:{module}:one_class", "the feature task's num_classes is 1; give the number of classes"),
    ("python:{module}:nan_inputs", "the feature task's train split has NaN or infinite values in x"),
    ("python:{module}:no_tasks", "it offers no tasks (its tasks or shifts are empty)"),
    ("python:{module}:shift_without_task", "its shifts offer output but its tasks have no output key"),
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


def overlapping_layers():
    made = make_setup()
    return aft.CustomSetup(model=made.model, tasks=made.tasks, layers=[("hidden", ["0", "2"]), ("head", ["2.weight"])])


def _with(train=None, model=None, test=None, **fields):
    made = make_setup()
    task = made.tasks["feature"]
    return aft.CustomSetup(model=made.model if model is None else model, tasks={"feature": aft.TaskData(
        task.source, task.train if train is None else train, task.val, task.test if test is None else test,
        task.num_classes)}, **fields)


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


def tasks_raise():
    def tasks(spec):
        raise ValueError("nope")
    return aft.CustomSetup(model=make_setup().model, tasks=tasks)


def tasks_refuse():
    from autoft_core.errors import AutoFTError

    def tasks(spec):
        raise AutoFTError("setup python:elsewhere: bring the data first")
    return aft.CustomSetup(model=make_setup().model, tasks=tasks)


def numpy_split():
    train = make_setup().tasks["feature"].train
    return _with(train=aft.Split(train.x.numpy(), train.y.numpy()))


def lambda_model():
    return _with(model=lambda x: x[:, :2])


class FirstTwo(nn.Module):
    def forward(self, x):
        return x[:, :2]


def no_parameters():
    return _with(model=FirstTwo())


def string_layers():
    return _with(layers="hidden")


def names_as_layers():
    return _with(layers=["hidden", "head"])


def string_recipe():
    return _with(recipe="fast")


def empty_test():
    test = make_setup().tasks["feature"].test
    return _with(test=aft.Split(test.x[:0], test.y[:0]))


def one_class():
    task = make_setup().tasks["feature"]
    zero = lambda split: aft.Split(split.x, split.y * 0)  # noqa: E731
    return aft.CustomSetup(model=nn.Sequential(nn.Linear(8, 1)), tasks={"feature": aft.TaskData(
        zero(task.source), zero(task.train), zero(task.val), zero(task.test), 1)})


def nan_inputs():
    train = make_setup().tasks["feature"].train
    x = train.x.clone()
    x[3, 1] = float("nan")
    return _with(train=aft.Split(x, train.y))


def no_tasks():
    return aft.CustomSetup(model=make_setup().model, tasks={})


def shift_without_task():
    return _with(shifts=("feature", "output"))
''')
    code = _main(["weights", "--setup", case.format(module=module), "--shift", "feature", "--method", "full"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and phrase in err, err


def test_bad_data_raises_the_projects_error_and_stores_nothing(tmp_path, monkeypatch, capsys):
    text = _readme_example() + '''

def empty_val():
    made = make_setup()
    task = made.tasks["feature"]
    return aft.CustomSetup(model=made.model, tasks={"feature": aft.TaskData(
        task.source, task.train, aft.Split(task.val.x[:0], task.val.y[:0]), task.test, 2)})
'''
    module = _module(tmp_path, monkeypatch, "empty_val_setup", text)
    with pytest.raises(AutoFTError, match="the feature task's val split is empty"):
        api.load_task(f"python:{module}:empty_val", "feature")
    store = tmp_path / "r.sqlite"
    argv = ["finetune", "--setup", f"python:{module}:empty_val", "--shift", "feature", "--method", "full",
            "--epochs", "1", "--store", str(store)]
    assert _main(argv) == 2 and capsys.readouterr().err.count("\n") == 1
    assert not store.exists() or ResultStore(store).frame().empty


@pytest.mark.parametrize("body, phrase", [
    ("def make_setup(:\n", "raised SyntaxError: "),
    ("raise RuntimeError('no GPU here')\n", "raised RuntimeError: no GPU here; fix the module"),
])
def test_a_module_that_fails_to_import_gives_one_clear_line_and_exit_2(body, phrase, tmp_path, monkeypatch, capsys):
    module = _module(tmp_path, monkeypatch, f"unimportable_{abs(hash(body)) % 10**8}", body)
    code = _main(["weights", "--setup", f"python:{module}:make_setup", "--shift", "feature", "--method", "full"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"importing module {module} {phrase}" in err, err
