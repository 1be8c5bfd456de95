"""Experiments at scale: plan expansion; a killed sweep resumed on worker processes without losses or
repeats; all-cache-hit reruns; failures; Ray against the local backend; Table 1 by hand; CLI errors."""
from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoft_core.cli import main
from autoft_core.config import RunConfig, code_version
from autoft_core.errors import BadArgumentError
from autoft_core import experiment
from autoft_core.experiment import pool_counts, resolve
from autoft_core.experiments import backends
from autoft_core.core.recipe import Recipe, field_names
from autoft_core.experiments.plan import grid_configs, shot_capacity, shots_configs, sweep_configs
from autoft_core.experiments.runner import SweepFailed, plan_jobs, run_sweep
from autoft_core.methods import method_names
from autoft_core.paths import REPO_ROOT
from autoft_core.runs import lookup, lookup_many
from autoft_core.setups import CORRUPTIONS
from autoft_core.setups import get_setup
from autoft_core.store import ResultStore

TINY = ["--epochs", "1", "--shots", "20"]
SMALL_SWEEP = ["sweep", "--shifts", "output", "--methods", "full,linear-probe", "--seeds", "0,1", *TINY]


def _rows(path: Path) -> dict[str, tuple[float, str]]:
    """key -> (created, result JSON) of every stored run."""
    with sqlite3.connect(path) as conn:
        return {k: (c, r) for k, c, r in conn.execute("SELECT key, created, result FROM runs")}


def _fake_record(cfg: RunConfig) -> dict:
    """What `backends.execute` answers, without computing anything."""
    return {"key": cfg.key(), "cached": False, "seconds": 0.0, "test_acc": 0.5, "best_val_test_acc": 0.5}


# ----------------------------------------------------------------------------- plans

def test_lookup_many_finds_runs_by_the_resolved_key_and_aliases_the_request(store):
    asked = [RunConfig(setup="digits", shift="output", method="full", seed=s) for s in (0, 1, 2)]
    resolved = [resolve(cfg) for cfg in asked]
    store.put(resolved[1].key(), resolved[1].to_dict(), {"test_acc": 0.5})
    found = lookup_many(asked, store)
    assert [f.stored for f in found] == [False, True, False] and found[1].record == {"test_acc": 0.5}
    assert [f.key for f in found] == [cfg.key() for cfg in resolved] and [f.cfg for f in found] == resolved
    assert store.get(asked[1].key()) == {"test_acc": 0.5}  # aliased: the next look-up needs no resolving
    assert lookup_many(asked, store) == [lookup(cfg, store) for cfg in asked]  # now by the alias, as `lookup`


def test_sweep_expands_methods_shifts_corruptions_seeds():
    configs = sweep_configs("digits", "all", "all", 5, "full,linear-probe", "0,1,2", Recipe(epochs=1))
    assert len(configs) == 3 * 2 * (len(CORRUPTIONS) + 2)
    assert {c.corruption for c in configs if c.shift == "input"} == set(CORRUPTIONS)
    assert {c.corruption for c in configs if c.shift != "input"} == {None}
    assert len({c.key() for c in configs}) == len(configs) and {c.recipe.epochs for c in configs} == {1}
    every = sweep_configs("digits", "output", "all", 5, "all", "0", Recipe())
    assert [c.method for c in every] == method_names()  # "all" = registered now


def test_shots_are_k_per_class_times_classes_and_unbalanceable_k_skipped():
    configs, skipped = shots_configs("digits", "feature", None, 5, "full", "1,5,10000", "0", Recipe())
    assert [c.recipe.shots for c in configs] == [5, 25] and skipped == [10000]  # feature: 5 classes
    configs, _ = shots_configs("digits", "input", None, 5, "full,linear-probe", "1,5", "0,1", Recipe(),
                               capacity=lambda *a: (10, 30))
    assert len(configs) == 8 and {c.recipe.shots for c in configs} == {10, 50}
    assert {c.corruption for c in configs} == {"gaussian_noise"}  # the documented default


def test_shots_over_all_corruptions_use_each_and_the_smallest_class_of_any():
    sizes = {c: 30 for c in CORRUPTIONS} | {"frost": 4}
    configs, skipped = shots_configs("digits", "input", "all", 5, "full", "1,5", "0,1", Recipe(),
                                     capacity=lambda setup, shift, corruption, *a: (10, sizes[corruption]))
    assert skipped == [5]  # frost's pool cannot give 5 per class, so no corruption's curve goes there
    assert sorted(c.corruption for c in configs) == sorted(CORRUPTIONS * 2)  # each corruption, each seed
    assert {c.recipe.shots for c in configs} == {10}
    listed, _ = shots_configs("digits", "input", "frost,snow", 5, "full", "1", "0", Recipe(),
                              capacity=lambda *a: (10, 30))
    assert [c.corruption for c in listed] == ["frost", "snow"]


@pytest.mark.parametrize("shift, corruption", [("input", "gaussian_noise"), ("feature", None), ("output", None)])
def test_the_digits_pool_counts_it_declares_are_what_its_tasks_hold(monkeypatch, shift, corruption):
    setup_class = type(get_setup("digits"))
    cfgs = [resolve(RunConfig(setup="digits", shift=shift, corruption=corruption, seed=seed)) for seed in (0, 1)]
    declared = [pool_counts(cfg) for cfg in cfgs]
    monkeypatch.setattr(setup_class, "pool_counts", lambda self, spec: None)  # counted in the tasks, built
    experiment._cached_task.cache_clear()
    assert shot_capacity("digits", shift, corruption, 5, [0, 1], None) == (len(declared[0]), min(map(min, declared)))
    assert experiment._cached_task.cache_info().currsize == 0  # the planner keeps none of the tasks it counts
    assert [pool_counts(cfg) for cfg in cfgs] == declared
    assert experiment._cached_task.cache_info().currsize == 2  # the dashboard's count keeps them for its runs
    monkeypatch.undo()
    monkeypatch.setattr(setup_class, "task", lambda self, spec: pytest.fail("a task was built to count its pool"))
    assert shot_capacity("digits", shift, corruption, 5, [0, 1], None) == (len(declared[0]), min(map(min, declared)))


def test_grid_is_a_product_and_params_are_validated_before_any_run(store):
    configs = grid_configs("digits", "input", None, 5, "full", {"topk": [1, 2, 4, 0], "partial_epochs": range(6)},
                           "0", Recipe())
    assert len(configs) == 24 and configs[0].params == {"topk": 1, "partial_epochs": 0}
    with pytest.raises(BadArgumentError, match="parameter for method full"):
        plan_jobs(configs, store, None)  # full has no topk: refused while planning


# ----------------------------------------------------------------------------- kill, resume, rerun

def _kill_then_resume(path: Path) -> dict:
    """A CLI sweep SIGKILLed once its first row lands, then the same command resumed on 2 worker processes."""
    ResultStore(path)
    argv = [*SMALL_SWEEP, "--store", str(path)]
    proc = subprocess.Popen([sys.executable, "-m", "autoft_core", *argv], cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 150
    while not _rows(path) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before, logs = _rows(path), set(path.parent.glob("logs/*.log"))
    assert main([*argv, "--max-parallel", "2"]) == 0
    (log,) = set(path.parent.glob("logs/*.log")) - logs
    resumed = re.findall(r" ran .* key=(\w+)", log.read_text())
    return {"path": path, "argv": argv, "before": before, "resumed": resumed, "after": _rows(path)}


@pytest.fixture(scope="module")
def killed_then_resumed(tmp_path_factory) -> dict:
    """`_kill_then_resume`, again if engine files changed meanwhile (others edit this tree while tests run;
    a run's key includes the hash of the engine's code, so such a change is a different sweep)."""
    for _ in range(3):
        code_version.cache_clear()
        out = _kill_then_resume(tmp_path_factory.mktemp("kill") / "results.sqlite")
        if set(ResultStore(out["path"]).frame()["code_version"]) == {code_version()}:
            return out
    pytest.fail("the engine's files changed during each of 3 attempts")


def test_killed_sweep_resumes_losing_nothing_and_repeating_nothing(killed_then_resumed):
    before, after, resumed = (killed_then_resumed[k] for k in ("before", "after", "resumed"))
    assert 1 <= len(before) < 4 and len(after) == 4
    assert all(after[k] == before[k] for k in before)  # same rows, same `created`: not re-run
    assert sorted(resumed) == sorted(set(after) - set(before))  # only the missing ones, once each


def test_finished_sweep_rerun_is_all_cache_hits(killed_then_resumed, monkeypatch, capsys):
    for backend in (backends.LocalBackend, backends.ProcessBackend):
        monkeypatch.setattr(backend, "__init__", lambda *a: pytest.fail("a backend was started"))
    assert main(killed_then_resumed["argv"]) == 0
    assert _rows(killed_then_resumed["path"]) == killed_then_resumed["after"]  # no row rewritten
    assert "4 runs, 4 from the store, 0 ran" in capsys.readouterr().out


def test_a_failing_run_is_reported_and_alone_retried(store, monkeypatch, tmp_path):
    def fake(cfg, *args):
        if cfg.seed == 1 and not getattr(fake, "healed", False):
            raise RuntimeError("boom")
        return _fake_record(cfg)

    monkeypatch.setattr(backends, "execute", fake)
    requests = sweep_configs("digits", "output", "all", 5, "full", "0,1,2", Recipe(epochs=1, shots=20))
    make = lambda: backends.LocalBackend(None, "cpu", None)  # noqa: E731
    with pytest.raises(SweepFailed, match="1 of 3 runs failed"):
        run_sweep(requests, store, make, log_dir=tmp_path)
    assert sorted(store.frame()["status"]) == ["failed", "ok", "ok"]  # recorded, and not taken for a result
    fake.healed = True
    report = run_sweep(requests, store, make, log_dir=tmp_path)
    assert (report.cached, report.ran, len(_rows(store.path))) == (2, 1, 3)
    assert set(store.frame()["status"]) == {"ok"}
    assert "RuntimeError: boom" in sorted(tmp_path.glob("sweep-*.log"))[0].read_text()


def test_sigterm_stops_a_sweep_like_ctrl_c_keeping_finished_runs(monkeypatch, tmp_path, capsys):
    def fake(cfg, *args):
        if cfg.seed == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return _fake_record(cfg)

    monkeypatch.setattr(backends, "execute", fake)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        main([*SMALL_SWEEP, "--methods", "full", "--seeds", "0,1,2", "--store", str(tmp_path / "r.sqlite")])
    assert stopped.value.code == 130 and "re-run the same command to resume" in capsys.readouterr().err
    assert len(_rows(tmp_path / "r.sqlite")) == 1 and signal.getsignal(signal.SIGTERM) == before


def test_a_broken_backend_stops_the_sweep_keeping_finished_runs(store, tmp_path):
    class Broken:
        def run(self, configs):
            yield configs[0], _fake_record(configs[0])
            raise OSError("worker process died")

        def close(self, abort=False):
            assert abort

    requests = sweep_configs("digits", "output", "all", 5, "full", "0,1", Recipe(epochs=1, shots=20))
    with pytest.raises(SweepFailed, match="stopped after 1 runs: OSError"):
        run_sweep(requests, store, Broken, log_dir=tmp_path)
    assert len(_rows(store.path)) == 1


def test_a_run_made_by_changed_engine_code_is_kept_under_its_own_version(store, monkeypatch, tmp_path):
    made = {"key": "k-new", "code_version": "new", "cached": False, "seconds": 0.0, "test_acc": 0.5,
            "best_val_test_acc": 0.5}
    monkeypatch.setattr(backends, "execute", lambda cfg, *a: dict(made))
    requests = sweep_configs("digits", "output", "all", 5, "full", "0", Recipe(epochs=1, shots=20))
    report = run_sweep(requests, store, lambda: backends.LocalBackend(None, "cpu", None), log_dir=tmp_path)
    assert report.other_versions == {"new"} and store.frame()["code_version"].tolist() == ["new"]
    assert store.get("k-new")["test_acc"] == 0.5 and store.get(resolve(requests[0]).key()) is None


# ----------------------------------------------------------------------------- other backends

def _results_by_config(path: Path) -> dict[str, dict]:
    """Config (without code version) -> result (without timing) of every stored run."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT config, result FROM runs").fetchall()
    return {json.dumps({**json.loads(c), "code_version": None}, sort_keys=True):
            {f: v for f, v in json.loads(r).items() if f != "seconds"} for c, r in rows}


def test_ray_stores_the_same_rows_as_the_local_backend(killed_then_resumed, tmp_path, capsys):
    pytest.importorskip("ray")  # in requirements.txt (CI has it); a machine without it gets the next test's line
    path = tmp_path / "results.sqlite"
    argv = [*SMALL_SWEEP, "--seeds", "0", "--store", str(path), "--backend", "ray", "--max-parallel", "2"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "2 runs, 0 from the store, 2 ran" in capsys.readouterr().out
    reference, ours = _results_by_config(killed_then_resumed["path"]), _results_by_config(path)
    assert len(ours) == 2 and all(ours[c] == reference[c] for c in ours)


def test_the_ray_backend_without_ray_installed_is_one_clear_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    argv = [*SMALL_SWEEP, "--seeds", "0", "--store", str(tmp_path / "results.sqlite"), "--backend", "ray"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ray" in err and "--backend local" in err and "Traceback" not in err
    assert not (tmp_path / "results.sqlite").exists() or sqlite3.connect(tmp_path / "results.sqlite").execute(
        "select count(*) from runs").fetchone()[0] == 0


# ----------------------------------------------------------------------------- Table 1

def _put(store: ResultStore, acc: float, version: str | None = None, **task) -> None:
    recipe = get_setup("digits").recipe.with_values(**{k: task.pop(k) for k in list(task) if k in field_names()})
    cfg = resolve(RunConfig(**task, recipe=recipe))
    config = cfg.to_dict() | ({"code_version": version} if version else {})
    store.put(f"{cfg.key()}{version or ''}", config, {"test_acc": acc, "best_val_test_acc": acc / 2})


@pytest.fixture
def hand_store(store) -> ResultStore:
    """Two methods, two seeds, two corruptions, with rows the table must leave out."""
    for seed, (noise, frost, output) in enumerate([(0.8, 0.6, 0.5), (0.9, 0.7, 0.7)]):
        _put(store, noise, shift="input", corruption="gaussian_noise", seed=seed)
        _put(store, frost, shift="input", corruption="frost", seed=seed)
        _put(store, output, shift="output", seed=seed)
        _put(store, 0.9, shift="output", method="linear-probe", seed=seed)
    _put(store, 0.4, shift="feature", seed=0)
    _put(store, 0.3, shift="input", corruption="gaussian_noise", method="linear-probe", seed=0)
    _put(store, 0.96, shift="output", method="linear-probe", seed=0, version="stale")  # older code
    _put(store, 0.99, shift="output", method="linear-probe", seed=1, epochs=3)  # another recipe
    _put(store, 0.99, shift="input", corruption="frost", severity=3, seed=0)  # another severity
    _put(store, 0.99, shift="input", corruption="snow", seed=0)  # a corruption not asked for
    return store


def test_table_markdown_matches_a_hand_computation(hand_store, capsys):
    assert main(["table", "--store", str(hand_store.path), "--corruptions", "gaussian_noise,frost"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Table 1 - digits: test_acc (%), mean ± std over 1-2 seeds")
    # full, input: seeds (80+60)/2 = 70 and (90+70)/2 = 80 -> 75.0 ± 7.1; output 50, 70 -> 60.0 ± 14.1
    # linear-probe, input: seed 0 only, gaussian_noise only -> 30.0; output 90, 90 -> 90.0 ± 0.0 (best)
    assert lines[2:6] == ["| method | input-level | feature-level | output-level |", "|:--|--:|--:|--:|",
                          "| full | **75.0 ± 7.1** | **40.0** | 60.0 ± 14.1 |",
                          "| linear-probe | 30.0 | — | **90.0 ± 0.0** |"]
    assert "- note: linear-probe, seed 0: input-level averages 1 of 2 corruptions" in lines
    assert "- note: full, feature-level: 1 of 2 seeds" in lines


def test_table_csv_other_metric_and_any_version(hand_store, capsys, tmp_path):
    out = tmp_path / "t.csv"
    assert main(["table", "--store", str(hand_store.path), "--corruptions", "gaussian_noise,frost", "--format", "csv",
                 "--metric", "best_val_test_acc", "--any-version", "--out", str(out)]) == 0
    assert out.read_text().splitlines() == ["method,input-level,feature-level,output-level",
                                            "full,37.5 ± 3.5*,20.0*,30.0 ± 7.1",
                                            "linear-probe,15.0,—,46.5 ± 2.1*"]  # the stale 0.96 counts


# ----------------------------------------------------------------------------- CLI errors

@pytest.mark.parametrize("argv, message", [
    (["sweep", "--methods", "full,nope"], "unknown or invalid method 'nope'; valid: full, linear-probe"),
    (["sweep", "--shifts", "input,sideways"], "unknown or invalid shift for setup digits 'sideways'; valid: input"),
    (["sweep", "--corruptions", "fog"], "unknown or invalid corruption 'fog'; valid: frost"),
    (["sweep", "--seeds", "0,x"], "seed 'x' is not a whole number"),
    (["sweep", "--gpus-per-run", "1"], "option for --backend local '--gpus-per-run'"),
    (["grid", "--method", "full,linear-probe", "--values", "topk=1"], "unknown or invalid method 'full,linear-probe'"),
    (["grid", "--method", "criticality-random", "--values", "topk=1,-1"], "value for topk '-1'"),
    (["grid", "--method", "full"], "declares no hyper-parameter grid"),
    (["table", "--metric", "loss"], "argument --metric: invalid choice: 'loss'"),
])
def test_bad_arguments_exit_2_with_one_line(argv, message, tmp_path, capsys):
    try:
        code = main([*argv, "--store", str(tmp_path / "r.sqlite")])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err
    assert not (tmp_path / "r.sqlite").exists() or not _rows(tmp_path / "r.sqlite")


def test_both_tables_leave_diverged_runs_out_of_their_means_and_say_so():
    import numpy as np
    import pandas as pd

    from autoft_core.experiments.tables import Selection, per_corruption, table1

    rows = [{"setup": "digits", "shift": "input", "corruption": c, "severity": 5, "method": "full", "params": {},
             "seed": seed, "created": float(seed), "status": "diverged" if (c, seed) == ("snow", 2) else "ok",
             "test_acc": None if (c, seed) == ("snow", 2) else acc}
            for seed, (frost, snow) in enumerate([(0.4, 0.6), (0.5, 0.7), (0.45, None)])
            for c, acc in (("frost", frost), ("snow", snow))]
    sel = Selection("digits", ["input"], ["frost", "snow"], 5, {}, {}, None)
    per = per_corruption(pd.DataFrame(rows), sel)
    assert per.cells["full", "snow"].seeds == 2 and per.cells["full", "snow"].mean == pytest.approx(65.0)
    assert per.cells["full", "frost"].mean == pytest.approx(100 * np.mean([0.4, 0.5, 0.45]))
    assert per.notes == ["full, snow: 1 diverged run left out (lower the lr)"]
    whole = table1(pd.DataFrame(rows), sel)
    assert "full, input-level: 1 diverged run left out (lower the lr)" in whole.notes
    assert whole.cells["full", "input"].mean == pytest.approx(100 * np.mean([0.5, 0.6, 0.45]))  # seed 2: frost alone
