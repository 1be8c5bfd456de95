"""Bad input and injected faults, as a new user and an adversary would try them: every case ends in one
clean line (exit 2, or the documented 3 for a diverged run and 130 for Ctrl-C) or one AutoFTError, never a
traceback, and the store is unchanged or holds exactly the finished runs (diverged ones included, as such).
Loading the real setups from tiny real-format files never opens a network connection."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from autoft_core import experiment
from autoft_core.cli import COMMANDS, main
from ui import engine
from autoft_core.config import RunConfig
from autoft_core.cpu_isa import is_x86_64
from autoft_core.setups.digits import _initial_model
from autoft_core.data.breeds_hierarchy import LIVING17, make_superclasses
from autoft_core.core.data import Split, TaskData
from autoft_core.errors import AutoFTError, NonFiniteError, RunDiverged
from autoft_core.experiments import backends
from autoft_core.experiments.runner import run_sweep
from autoft_core.core.recipe import Recipe, field_names
from autoft_core.finetune import finetune
from autoft_core.layers import partition
from autoft_core.methods._scale import scaled
from autoft_core import kept_tensors
from autoft_core.models import weights_cache
from autoft_core.models.digits_net import DigitsResNet
from autoft_core.paths import DataPaths
from autoft_core.core.recipe import TaskSpec
from autoft_core.setups import get_setup
from autoft_core.models.normalized_resnet import NormalizedResNet
from autoft_core.setups.breeds import load_moco
from autoft_core.setups.cifar10 import Cifar10Setup
from autoft_core.store import ResultStore
from test_setup_breeds import ALL_LEAVES, EDGES, living, world, write_hierarchy  # noqa: F401 (world: fixture)
from test_setup_cifar10 import checkpoint, trust_tiny_clean, write_clean, write_corrupted  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parent.parent
TINY = ["--epochs", "1", "--shots", "20"]
DIVERGING = ["--epochs", "3", "--shots", "50", "--lr", "1e6"]  # the full digits net blows up in epoch 2

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- helpers


def _cfg(**given: object) -> RunConfig:
    """A RunConfig whose recipe settings among `given` change the setup's recipe, as the CLI builds it."""
    recipe = {k: given.pop(k) for k in list(given) if k in field_names()}
    return RunConfig(**given, recipe=get_setup(str(given.get("setup", "digits"))).recipe.with_values(**recipe))


def cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """main(argv) in this process: (exit status, stdout, stderr)."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_clean_line(err: str, needle: str) -> str:
    """The only line on stderr, which holds `needle`, in plain English, without a traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], err
    for bad in ("Traceback", "a int", "_positive_int", "invalid <", "weights_only=False"):
        assert bad not in err, err
    return lines[0]


def statuses(path: Path) -> list[str]:
    """The status of every stored run (none when the store file is absent)."""
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        rows = sorted(row[0] for row in conn.execute("SELECT status FROM runs"))
    conn.close()
    return rows


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every attempt to open a connection is recorded and refused; the test asserts none was made."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object, *args: object) -> None:
        attempts.append(address)
        raise ConnectionRefusedError(f"test: no network ({address})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.fixture
def read_only_sqlite(monkeypatch: pytest.MonkeyPatch):
    """From the call on, SQLite opens files read-only (as when the file or its folder loses write permission:
    the tests run as root, which chmod cannot stop)."""
    real = sqlite3.connect

    def install() -> None:
        monkeypatch.setattr(sqlite3, "connect", lambda path, *a, **kw: real(f"file:{path}?mode=ro", *a, uri=True,
                                                                            **kw))
    return install


@pytest.fixture
def read_only_folder(monkeypatch: pytest.MonkeyPatch, read_only_sqlite):
    """From the call on, a folder is read-only as a read-only mount makes it, even for root: SQLite opens files
    read-only and the OS answers that nothing can be written in that folder."""
    real = os.access

    def install(folder: Path) -> None:
        read_only_sqlite()
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: not (Path(path) == folder and mode & os.W_OK)
                            and real(path, mode, **kw))
    return install


def _refuse_computing(*args: object, **kwargs: object) -> None:
    raise AssertionError("a run was computed although the store cannot take its result")


# ----------------------------------------------------------------------------- bad numbers and names

SEED_RANGE = "is not a whole number from 0 to 2147483647"


@pytest.mark.parametrize("argv, needle", [
    (["finetune", "--seed", str(2**63)], f"'{2**63}' {SEED_RANGE}"),
    (["finetune", "--seed", "-1"], f"'-1' {SEED_RANGE}"),
    (["finetune", "--seed", "1e3"], f"'1e3' {SEED_RANGE}"),
    (["finetune", "--lr", "1e300"], "'1e300' is not a number from 1e-12 to 1000000"),
    (["finetune", "--lr", "nan"], "'nan' is not a number from 1e-12"),
    (["finetune", "--lr=-inf"], "'-inf' is not a number from 1e-12"),
    (["finetune", "--weight-decay", "-1"], "'-1' is not a number from 0"),
    (["finetune", "--weight-decay", "nan"], "'nan' is not a number from 0"),
    (["finetune", "--shots", "1000000000"], "'1000000000' is not a whole number from 1 to 1000000"),
    (["finetune", "--epochs", "2.5"], "'2.5' is not a whole number"),
    (["finetune", "--severity", "abc"], "'abc' is not a whole number"),
    (["finetune", "--batch-size", "0"], "'0' is not a whole number from 1"),
    (["finetune", "--method", "auto-rgn", "--param", "batches=many"],
     "value for batches 'many' is not a whole number"),
    (["finetune", "--method", "lp-ft", "--param", "lp_lr_factor=inf"], "value for lp_lr_factor 'inf' is not a number"),
    (["finetune", "--method", "lp-ft", "--param", "lp_lr_factor=1e300"], "value for lp_lr_factor '1e300' is not a"),
    (["finetune", "--method", "criticality-random", "--param", "topk=1e99"], "value for topk '1e99'"),
    (["sweep", "--shifts", "output", "--methods", "full", "--seeds", f"0,{2**63}"], f"seed '{2**63}' {SEED_RANGE}"),
    (["sweep", "--shifts", "output", "--methods", "full", "--cpus-per-run", "inf"], "'inf' is not a number from 0.01"),
    (["sweep", "--shifts", "output", "--methods", "full", "--backend", "ray", "--gpus-per-run", "nan"],
     "'nan' is not a number from 0 to 1024"),
    (["grid", "--method", "criticality-random", "--values", "topk=1", "--lr", "1e300"],
     "'1e300' is not a number from 1e-12"),
])
def test_bad_numbers_exit_2_with_one_plain_line_and_store_nothing(argv, needle, tmp_path, capsys):
    store = tmp_path / "r.sqlite"
    code, out, err = cli([*argv, *TINY, "--store", str(store)], capsys)
    assert code == 2 and not out
    one_clean_line(err, needle)
    assert statuses(store) == []


def test_numbers_are_checked_in_the_config_too():
    for bad in ({"seed": 2**63}, {"seed": -1}, {"lr": float("inf")}, {"lr": 1e300}, {"weight_decay": -1.0},
                {"weight_decay": float("nan")}, {"shots": 10**9}, {"epochs": -1}, {"severity": 2.5}):
        with pytest.raises(AutoFTError):
            _cfg(**bad)
    with pytest.raises(AutoFTError, match="momentum"):
        Recipe(momentum=float("nan"))


def test_ctrl_c_ends_with_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setitem(COMMANDS, "finetune", interrupted)
    code, _, err = cli(["finetune"], capsys)
    assert code == 130
    one_clean_line(err, "interrupted")


def test_ctrl_c_inside_an_import_that_swallows_it_still_ends_with_one_line_and_exit_130(monkeypatch, capsys):
    def half_imported(args: object) -> None:
        try:  # an import that catches the interrupt and leaves its module half made (numpy's, seen)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            pass
        raise RecursionError("maximum recursion depth exceeded")  # what the module's next use then raises

    monkeypatch.setitem(COMMANDS, "finetune", half_imported)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whatever runs the test
    try:
        code, _, err = cli(["finetune"], capsys)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 130
    one_clean_line(err, "interrupted")


def test_a_warning_on_the_command_line_is_one_line_like_an_error(tmp_path):
    (tmp_path / "warns.py").write_text("import warnings\n"
                                       "def make():\n"
                                       "    warnings.warn('kept file X is damaged; solving it again')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]), "AUTOFT_CACHE": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "autoft_core", "finetune", "--setup", "python:warns:make", "--shift",
                           "feature", "--store", str(tmp_path / "r.sqlite")], env=env, capture_output=True, text=True)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 2, proc.stderr
    assert lines[0] == "autoft_core: warning: kept file X is damaged; solving it again"
    assert lines[1].startswith("autoft_core: error: setup python:warns:make: make() returned a NoneType")


def test_sigint_during_a_real_run_exits_130_without_a_row(tmp_path):
    get_setup("digits").source_model("output")  # pretrained and cached first: the signal lands in fine-tuning
    store = tmp_path / "r.sqlite"
    # a background job of a non-interactive shell (`bash .ci/run &`) starts with SIGINT ignored, its children
    # inherit that and Python then installs no KeyboardInterrupt: the child starts with SIGINT at its default
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "autoft_core", "finetune", "--epochs", "200", "--store",
                                 str(store)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    deadline = time.monotonic() + 120
    while not store.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    # past the lazy imports and data loading (a Ctrl-C inside numpy's own import can leave numpy broken),
    # well inside the 200 epochs (over a minute)
    time.sleep(10.0)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    one_clean_line("\n".join(line for line in err.splitlines() if "Warning" not in line and not line.startswith(" ")),
                   "interrupted")
    assert statuses(store) == []


def test_the_auto_rgn_overflow_message_names_the_cause_not_the_device():
    with pytest.raises(NonFiniteError) as info:
        scaled([1.0, float("nan")], "max", "auto-rgn")
    assert "--device" not in str(info.value) and "lower --lr" in str(info.value)


# ----------------------------------------------------------------------------- divergence

def test_lr_1e6_diverges_with_one_line_exit_3_and_a_diverged_row(tmp_path):
    store = tmp_path / "r.sqlite"
    argv = [sys.executable, "-m", "autoft_core", "finetune", *DIVERGING, "--store", str(store)]
    for cached in (False, True):  # the second answer comes from the store, and says the same
        out = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert out.returncode == RunDiverged.exit_code == 3 and not out.stdout
        line = one_clean_line(out.stderr, "training diverged at epoch ")
        assert "lower --lr" in line
        assert statuses(store) == ["diverged"], cached
    record = ResultStore(store).get(_cfg(epochs=3, shots=50, lr=1e6).key())
    assert record["status"] == "diverged" and record["test_acc"] is None
    assert len(record["history"]) == record["diverged_epoch"] and record["history"][-1]["val_acc"] is None


def _random_task(n: int = 48) -> TaskData:
    g = torch.Generator().manual_seed(0)
    split = Split(torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g))
    return TaskData(split, split, split, split, 10)


@pytest.mark.parametrize("lr", [1e6, 1e-3])
def test_the_loop_stops_at_the_first_epoch_with_a_non_finite_loss(lr):
    model = DigitsResNet(num_classes=10)
    layers = partition(model, "module")
    losses: list[float] = []
    result = finetune(model, layers, [1.0] * len(layers), _random_task(), Recipe(epochs=6, lr=lr, batch_size=8),
                      progress=lambda epoch, total, stats: losses.append(stats["train_loss"]))
    weights_finite = all(torch.isfinite(p).all() for p in model.parameters())
    if lr == 1e-3:
        assert result.status == "ok" and result.diverged_epoch is None and len(result.history) == 6
        return
    assert result.status == "diverged" and result.test_acc is None and not weights_finite
    epoch = result.diverged_epoch
    assert len(result.history) == epoch and len(losses) == epoch - 1  # no progress report for the broken epoch
    assert all(np.isfinite(losses)) and result.history[-1]["val_acc"] is None
    assert result.best_val_epoch < epoch and 0 <= result.best_val_test_acc <= 1


def test_a_reweighter_that_meets_non_finite_scores_ends_the_run_as_diverged():
    class Overflowing:
        every = "epoch"
        calls = 0

        def __call__(self, model: nn.Module, batch: object) -> list[float]:
            self.calls += 1
            if self.calls == 2:
                raise NonFiniteError("scores overflowed")
            return [1.0] * len(layers)

    model = DigitsResNet(num_classes=10)
    layers = partition(model, "module")
    result = finetune(model, layers, [1.0] * len(layers), _random_task(), Recipe(epochs=4, batch_size=16),
                      reweighter=Overflowing())
    assert (result.status, result.diverged_epoch, len(result.history)) == ("diverged", 2, 2)


def test_a_sweep_with_one_diverging_config_stores_every_run(tmp_path):
    small = {"shift": "output", "epochs": 1, "shots": 20}
    requests = [_cfg(method="full", epochs=3, shots=50, lr=1e6), _cfg(method="full", **small),
                _cfg(method="linear-probe", **small)]
    store = ResultStore(tmp_path / "r.sqlite")
    report = run_sweep(requests, store, lambda: backends.LocalBackend(None, "cpu", None), log_dir=tmp_path)
    assert (report.ran, len(report.diverged), report.failed) == (3, 1, [])
    assert statuses(store.path) == ["diverged", "ok", "ok"]
    again = run_sweep(requests, store, lambda: pytest.fail("a stored run was recomputed"), log_dir=tmp_path)
    assert (again.cached, len(again.diverged)) == (3, 1)


# ----------------------------------------------------------------------------- the store

def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not an SQLite database\n" * 64)


def _parent_is_a_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "file").write_text("x")


def _fabricated(path: Path) -> None:
    """A store made by hand: the runs table has every column, but its key is not unique (no PRIMARY KEY)."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE runs (key TEXT, setup TEXT NOT NULL, shift TEXT NOT NULL, corruption TEXT, "
                     "severity INTEGER, method TEXT NOT NULL, seed INTEGER NOT NULL, shots INTEGER, "
                     "config TEXT NOT NULL, result TEXT NOT NULL, created REAL NOT NULL, status TEXT NOT NULL)")
    conn.close()


@pytest.mark.parametrize("command", [["finetune", *TINY], ["sweep", "--shifts", "output", "--methods", "full", *TINY]])
@pytest.mark.parametrize("fault, needle", [(_garbage, "move it away or delete it"),
                                           (_parent_is_a_file, "cannot create the folder"),
                                           (_fabricated, "runs table lacks the unique key on its key column")])
def test_an_unusable_store_file_stops_before_computing(command, fault, needle, tmp_path, monkeypatch, capsys):
    store = tmp_path / "r.sqlite"
    fault(store)
    if fault is _parent_is_a_file:
        store = tmp_path / "file" / "r.sqlite"
    before = store.read_bytes() if store.is_file() else None
    monkeypatch.setattr(experiment, "_context", _refuse_computing)
    monkeypatch.setattr(backends, "execute", _refuse_computing)
    code, _, err = cli([*command, "--store", str(store)], capsys)
    assert code == 2
    assert str(store) in one_clean_line(err, needle)
    assert (store.read_bytes() if store.is_file() else None) == before


@pytest.mark.parametrize("command", [["finetune", *TINY], ["sweep", "--shifts", "output", "--methods", "full", *TINY]])
def test_a_read_only_store_stops_before_computing(command, tmp_path, monkeypatch, capsys, read_only_sqlite):
    path = tmp_path / "r.sqlite"
    ResultStore(path).put("earlier", _cfg().to_dict(), {"test_acc": 0.5})
    read_only_sqlite()
    monkeypatch.setattr(experiment, "_context", _refuse_computing)
    monkeypatch.setattr(backends, "execute", _refuse_computing)
    code, _, err = cli([*command, "--store", str(path)], capsys)
    assert code == 2
    assert str(path) in one_clean_line(err, "is read-only")
    assert statuses(path) == ["ok"]


@pytest.mark.parametrize("command", [["finetune", *TINY], ["sweep", "--shifts", "output", "--methods", "full", *TINY]])
@pytest.mark.parametrize("existing", [False, True], ids=["new-store", "existing-store"])
def test_a_store_in_a_read_only_folder_names_the_folder_and_stops_before_computing(command, existing, tmp_path,
                                                                                   monkeypatch, capsys,
                                                                                   read_only_folder):
    path = tmp_path / "shared" / "r.sqlite"
    path.parent.mkdir()
    if existing:
        ResultStore(path).put("earlier", _cfg().to_dict(), {"test_acc": 0.5})
    read_only_folder(path.parent)
    monkeypatch.setattr(experiment, "_context", _refuse_computing)
    monkeypatch.setattr(backends, "execute", _refuse_computing)
    code, _, err = cli([*command, "--store", str(path)], capsys)
    assert code == 2
    line = one_clean_line(err, f"cannot write in the folder {path.parent} of the result store {path} ")
    assert "make that folder writable, or choose a store file in a writable folder (--store PATH" in line
    assert statuses(path) == (["ok"] if existing else [])


def test_a_read_only_store_holding_every_run_of_a_sweep_answers_it(tmp_path, monkeypatch, capsys, read_only_sqlite):
    path = tmp_path / "r.sqlite"
    sweep = ["sweep", "--shifts", "output", "--methods", "full", *TINY, "--store", str(path)]
    assert cli(sweep, capsys)[0] == 0
    read_only_sqlite()
    monkeypatch.setattr(backends, "execute", _refuse_computing)
    code, out, err = cli(sweep, capsys)
    assert code == 0, err
    assert statuses(path) == ["ok"]


def test_a_write_failing_after_the_run_saves_a_recovery_file(tmp_path, monkeypatch, capsys, read_only_sqlite):
    path = tmp_path / "r.sqlite"
    ResultStore(path)
    monkeypatch.setattr(ResultStore, "check_writable", lambda self: None)  # it was writable when the run began
    read_only_sqlite()
    code, _, err = cli(["finetune", *TINY, "--store", str(path)], capsys)
    assert code == 2
    line = one_clean_line(err, "The finished run was saved to ")
    saved = Path(line.split("saved to ")[1].split(";")[0])
    assert saved.parent == tmp_path and saved.is_file() and statuses(path) == []
    monkeypatch.undo()
    ResultStore(path).import_recovered(saved)
    stored = ResultStore(path).get(_cfg(epochs=1, shots=20).key())
    assert stored == json.loads(saved.read_text())["result"] and stored["status"] == "ok"


def test_a_store_deleted_during_the_run_gets_the_run(tmp_path):
    folder = tmp_path / "store"
    store = ResultStore(folder / "r.sqlite")

    def delete(epoch: int, total: int, stats: dict) -> None:
        for file in folder.iterdir():
            file.unlink()
        folder.rmdir()

    out = experiment.run_experiment(_cfg(epochs=1, shots=20), store, device="cpu", progress=delete)
    assert statuses(store.path) == ["ok"] and store.get(out["key"])["test_acc"] == out["test_acc"]


# ----------------------------------------------------------------------------- loaders

def _save(obj: object) -> object:
    return lambda path: torch.save(obj, path)


UNPICKLED: list[str] = []  # _record_unpickled's trace: stays empty unless a checkpoint is fully unpickled


def _record_unpickled() -> list[str]:
    UNPICKLED.append("ran")
    return UNPICKLED


class _Payload:
    """Runs _record_unpickled when a full (unsafe) unpickler loads it."""

    def __reduce__(self) -> tuple:
        return _record_unpickled, ()


CHECKPOINT_FAULTS = {
    "garbage": lambda path: path.write_bytes(b"\x00not a checkpoint" * 50),
    "empty": lambda path: path.write_bytes(b""),
    "cut short": lambda path: (torch.save({"state_dict": {"w": torch.zeros(50_000)}}, path),
                               path.write_bytes(path.read_bytes()[:3000])),
    "a bare tensor": _save(torch.zeros(3)),
    "a dict of a tensor": _save({"state_dict": torch.zeros(3)}),
    "a dict without state_dict": _save({"model": {}}),
    "python objects": _save({"state_dict": {}, "payload": _Payload()}),
    "a folder": lambda path: path.mkdir(),
}


@pytest.mark.parametrize("fault", list(CHECKPOINT_FAULTS))
def test_a_bad_robustbench_checkpoint_is_one_error_naming_it(fault, tmp_path, no_network):
    path = tmp_path / "cifar10" / "corruptions" / "Standard.pt"
    path.parent.mkdir(parents=True)
    CHECKPOINT_FAULTS[fault](path)
    with pytest.raises(AutoFTError) as info:
        Cifar10Setup(DataPaths(robustbench_model_dir=tmp_path)).source_model("input")
    message = str(info.value)
    assert str(path) in message and "it should be" in message and "weights_only=False" not in message
    assert no_network == [] and UNPICKLED == []
    if fault == "a folder":
        assert not (path / "cifar10").exists() and "is a folder; it should be a file" in message


@pytest.mark.parametrize("fault", [*CHECKPOINT_FAULTS, "other keys"])
def test_a_bad_moco_checkpoint_is_one_error_naming_it(fault, tmp_path):
    path = tmp_path / "moco.pth.tar"
    (_save({"state_dict": {"module.encoder_q.x": torch.zeros(2)}}) if fault == "other keys"
     else CHECKPOINT_FAULTS[fault])(path)
    with pytest.raises(AutoFTError) as info:
        load_moco(NormalizedResNet(2), path)
    assert str(path) in str(info.value) and "weights_only=False" not in str(info.value)
    assert "moco_v2_800ep_pretrain.pth.tar" in str(info.value) and UNPICKLED == []


def _labels_as_text(folder: Path) -> None:
    np.save(folder / "labels.npy", np.array([str(i % 10) for i in range(20)]))


def _labels_folder(folder: Path) -> None:
    (folder / "labels.npy").unlink()
    (folder / "labels.npy").mkdir()


def _images_folder(folder: Path) -> None:
    (folder / "gaussian_noise.npy").unlink()
    (folder / "gaussian_noise.npy").mkdir()


def _images_garbage(folder: Path) -> None:
    (folder / "gaussian_noise.npy").write_bytes(b"garbage" * 100)


@pytest.mark.parametrize("fault, file, needle", [
    (_labels_as_text, "labels.npy", "holds <U1 values; labels.npy holds whole-number class labels"),
    (_labels_folder, "labels.npy", "is a folder; it should be a file"),
    (_images_folder, "gaussian_noise.npy", "is a folder; it should be a file"),
    (_images_garbage, "gaussian_noise.npy", "is not a plain NumPy array file"),
])
def test_bad_cifar10c_files_are_one_error_naming_them(fault, file, needle, tmp_path, trust_tiny_clean, no_network):
    paths = DataPaths(cifar10_dir=write_clean(tmp_path / "cifar10"), cifar10c_dir=write_corrupted(tmp_path / "c"))
    fault(tmp_path / "c" / "CIFAR-10-C")
    with pytest.raises(AutoFTError) as info:
        Cifar10Setup(paths).task(TaskSpec("input", "gaussian_noise", severity=1, shots=10))
    assert str(tmp_path / "c" / "CIFAR-10-C" / file) in str(info.value) and needle in str(info.value)
    assert no_network == []


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("damage", ["garbage", "cut short"])
def test_an_undecodable_imagenet_image_is_one_error_naming_it(workers, damage, world, tmp_path):
    imagenet = tmp_path / "imagenet"
    for split in ("train", "val"):
        for wnid in ALL_LEAVES:
            (imagenet / split / wnid).mkdir(parents=True)
            for k, source in enumerate(sorted((world.imagenet_dir / split / wnid).iterdir())):
                data = source.read_bytes()
                bad = split == "train" and k == 0
                (imagenet / split / wnid / source.name).write_bytes(
                    (b"garbage" * 20 if damage == "garbage" else data[:len(data) // 3]) if bad else data)
    setup = living(DataPaths(imagenet_dir=imagenet, breeds_info_dir=world.breeds_info_dir), workers=workers,
                   source_size=200)  # every training image is read
    with pytest.raises(AutoFTError) as info:
        setup.task(TaskSpec("feature", shots=10))
    message = str(info.value)
    assert "is not a readable image" in message and "\n" not in message and "Traceback" not in message
    assert Path(message.split(" is not")[0]).name.endswith("_0.JPEG")


HIERARCHY_FAULTS = [
    ("dataset_class_info.json", "{[not json", "is not valid JSON"),
    ("dataset_class_info.json", json.dumps([["n1"], ["n2"]]), "rows are not [index, wnid, name] lists"),
    ("class_hierarchy.txt", "n00001740 n1 n2\n", "line 1 holds 3 fields, not 2"),
    ("class_hierarchy.txt", b"\xff\xfe\x00\x81", "cannot be read as text"),
    ("class_hierarchy.txt", "n00001740 n1\n", "do not give this data set's superclasses"),
]


@pytest.mark.parametrize("file, content, needle", HIERARCHY_FAULTS)
def test_a_malformed_breeds_file_is_named_and_setups_still_list(file, content, needle, tmp_path, monkeypatch, capsys):
    info = write_hierarchy(tmp_path / "info", EDGES, ALL_LEAVES)
    (info / file).write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(AutoFTError) as error:
        make_superclasses(info, LIVING17)
    assert needle in str(error.value)
    if "superclasses" not in needle:
        assert str(info / file) in str(error.value)

    for split in ("train", "val"):
        (tmp_path / "imagenet" / split).mkdir(parents=True)
    monkeypatch.setenv("AUTOFT_BREEDS_INFO_DIR", str(info))
    monkeypatch.setenv("AUTOFT_IMAGENET_DIR", str(tmp_path / "imagenet"))
    code, out, err = cli(["setups", "--json"], capsys)
    assert code == 0 and not err
    rows = {row["setup"]: row for row in json.loads(out)}
    assert rows["digits"]["ready"]
    for name in ("breeds-living17", "breeds-entity30"):
        assert not rows[name]["ready"] and any(needle in line for line in rows[name]["missing"])
    overview = {row["setup"]: row for row in engine.setups_overview(DataPaths.from_env())}
    assert overview["digits"]["ready"] and not overview["breeds-living17"]["ready"]


@pytest.fixture
def model_cache(tmp_path, monkeypatch) -> list[int]:
    """A private cache folder; the returned list counts the trainings of `tiny_model`."""
    monkeypatch.setenv("AUTOFT_CACHE", str(tmp_path))
    return []


def tiny_model(trainings: list[int]) -> nn.Module:
    def train(model: nn.Module) -> None:
        trainings.append(1)
        with torch.no_grad():
            model.weight.fill_(len(trainings))

    return weights_cache.cached_model("tiny", {"v": 1}, lambda: nn.Linear(64, 64), train)


def _cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _one_byte_changed(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # the last byte of a weight: still loads, but not what was saved
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_cut_short, _one_byte_changed])
def test_a_damaged_cached_model_is_detected_and_rebuilt(damage, model_cache):
    first = tiny_model(model_cache)
    path = weights_cache.cached_path("tiny", {"v": 1})
    assert torch.equal(tiny_model(model_cache).weight, first.weight) and len(model_cache) == 1  # a cache hit
    damage(path)
    with pytest.warns(UserWarning, match="is damaged"):
        rebuilt = tiny_model(model_cache)
    assert len(model_cache) == 2 and torch.all(rebuilt.weight == 2)
    assert torch.equal(tiny_model(model_cache).weight, rebuilt.weight) and len(model_cache) == 2


def _in_the_old_form(path: Path, hash_beside: bool) -> dict[str, torch.Tensor]:
    """Rewrite a cached model as weights_cache kept it before 2026-11-28: no checksum in the file, its
    SHA-256 in `<file>.sha256` (or, older still, nowhere); returns its tensors."""
    state = load_file(str(path))
    path.with_name(path.name + ".checked").unlink(missing_ok=True)
    save_file(state, str(path), metadata={"recipe": "{}"})
    if hash_beside:
        path.with_name(path.name + ".sha256").write_text(hashlib.sha256(path.read_bytes()).hexdigest())
    return state


@pytest.mark.parametrize("hash_beside", [True, False])
def test_a_cached_model_in_the_old_form_loads_without_retraining_and_is_rewritten(hash_beside, model_cache):
    path = weights_cache.cached_path("tiny", {"v": 1})
    tiny_model(model_cache)
    state = _in_the_old_form(path, hash_beside)
    with pytest.raises(kept_tensors.NoChecksum):
        kept_tensors.load(path)
    assert torch.equal(tiny_model(model_cache).weight, state["weight"]) and len(model_cache) == 1
    kept, _ = kept_tensors.load(path)  # now in the current form: its checksum in the file
    assert torch.equal(kept["weight"], state["weight"]) and not path.with_name(path.name + ".sha256").exists()


def test_a_cached_model_in_the_old_form_that_fails_its_hash_is_rebuilt(model_cache):
    path = weights_cache.cached_path("tiny", {"v": 1})
    tiny_model(model_cache)
    _in_the_old_form(path, hash_beside=True)
    _one_byte_changed(path)
    with pytest.warns(UserWarning, match="does not match the SHA-256"):
        rebuilt = tiny_model(model_cache)
    assert len(model_cache) == 2 and torch.all(rebuilt.weight == 2)


def test_a_model_cache_that_cannot_be_written_warns_and_keeps_the_trained_model(model_cache, monkeypatch):
    def read_only(path, write):
        raise PermissionError(f"Operation not permitted: {path}")

    monkeypatch.setattr(kept_tensors, "write_atomic", read_only)
    with pytest.warns(UserWarning, match="could not keep the trained model"):
        model = tiny_model(model_cache)
    assert len(model_cache) == 1 and torch.all(model.weight == 1) and not model.training
    assert not weights_cache.cached_path("tiny", {"v": 1}).exists()


def test_sweep_workers_exit_when_the_sweep_is_killed(tmp_path):
    """kill -9 of a sweep's driver: its spawned workers go too (they used to idle on, holding its pipes)."""
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import os, sys, time\n"
        "from autoft_core.experiments.backends import ProcessBackend\n"
        "from autoft_core.paths import DataPaths\n"
        "if __name__ == '__main__':\n"
        "    backend = ProcessBackend(DataPaths(), None, 1, 1)\n"
        "    print(backend.pool.submit(os.getpid).result(), flush=True)\n"
        "    time.sleep(120)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen([sys.executable, str(driver)], stdout=subprocess.PIPE, text=True, env=env)
    worker = int(proc.stdout.readline())
    assert _running(worker)  # alive while the driver is
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 20
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _running(worker):
        os.kill(worker, signal.SIGKILL)
        raise AssertionError("the worker outlived its killed driver by 20 s")


def _running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (an exited orphan may wait for its reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


# ----------------------------------------------------------------------------- offline and reproducible

def test_loading_the_real_setups_from_tiny_files_never_connects(checkpoint, world, tmp_path, trust_tiny_clean,
                                                                 no_network):
    paths = DataPaths(cifar10_dir=write_clean(tmp_path / "cifar10"), cifar10c_dir=write_corrupted(tmp_path / "c"),
                      robustbench_model_dir=checkpoint[0])
    cifar = Cifar10Setup(paths)
    assert len(cifar.task(TaskSpec("input", "gaussian_noise", severity=1, shots=10)).train) == 10
    assert len(cifar.task(TaskSpec("output", shots=10)).test) > 0
    cifar.source_model("input")
    breeds = living(world)
    assert breeds.task(TaskSpec("feature", shots=4)).num_classes == 2
    load_moco(NormalizedResNet(2), world.moco_checkpoint)
    assert no_network == []


def test_the_thread_count_cannot_change_a_digits_run(tmp_path):
    cfg = _cfg(epochs=1, shots=20)
    records = []
    for threads in (2, 1):
        torch.set_num_threads(threads)
        records.append(experiment.run_experiment(cfg, ResultStore(tmp_path / f"{threads}.sqlite"), device="cpu"))
        assert torch.get_num_threads() == threads  # restored
    for record in records:
        del record["seconds"]
    assert records[0] == records[1] and records[0]["cpu_threads"] == 1 and records[0]["effective_shots"] == 20
    if is_x86_64():
        assert records[0]["cpu_kernels"] == "AVX2"  # the engine's cap (cpu_isa.py), recorded with the run


def test_the_pretrained_digits_model_starts_from_its_own_seed():
    states = []
    for seed in (0, 1):
        torch.manual_seed(seed)  # whatever the global generator holds
        states.append(_initial_model("standard").state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
