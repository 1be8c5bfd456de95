"""The SQLite result store: hits and misses, aliases, atomic writes, concurrent writers, DataFrames."""
from __future__ import annotations

import multiprocessing as mp
import sqlite3

import pandas as pd
import pytest

from autoft_core.errors import StoreError
from autoft_core.store import ResultStore

CONFIG = {"setup": "digits", "shift": "output", "corruption": None, "severity": 0, "method": "full",
          "seed": 0, "shots": 100, "epochs": 3}


def test_miss_then_hit(store):
    assert store.get("k1") is None
    store.put("k1", CONFIG, {"test_acc": 0.9, "history": [{"epoch": 1}]})
    assert store.get("k1") == {"test_acc": 0.9, "history": [{"epoch": 1}]}
    assert store.get("k2") is None


def test_alias_finds_the_run(store):
    store.put("resolved", CONFIG, {"test_acc": 0.5}, aliases=("as-asked",))
    assert store.get("as-asked") == {"test_acc": 0.5}
    store.alias("other-request", "resolved")
    assert store.get("other-request") == {"test_acc": 0.5}


def test_get_many_answers_as_get_does_for_every_key_in_one_call(store, monkeypatch):
    monkeypatch.setattr("autoft_core.store._KEYS_PER_QUERY", 3)  # several chunks
    for i in range(5):
        store.put(f"run{i}", CONFIG, {"test_acc": i / 10}, aliases=(f"asked{i}",))
    store.put("asked0", CONFIG, {"test_acc": 0.99})  # a run key that is also another run's alias: its own run
    store.put_failed("broken", CONFIG, "boom")
    keys = [f"run{i}" for i in range(5)] + [f"asked{i}" for i in range(5)] + ["broken", "absent"]
    many = store.get_many(keys)
    assert many == {key: store.get(key) for key in keys if store.get(key) is not None}
    assert set(many) == set(keys) - {"broken", "absent"} and many["asked0"] == {"test_acc": 0.99}
    assert many["asked3"] == {"test_acc": 0.3} and store.get_many([]) == {}


def test_a_failed_write_leaves_no_row(store):
    with pytest.raises(ValueError):
        store.put("bad", CONFIG, {"test_acc": 0.1, "status": "finished?"})  # checked before writing
    assert store.get("bad") is None
    with pytest.raises(StoreError):  # the alias cannot be bound, inside the transaction: all rolls back
        store.put("half", CONFIG, {"test_acc": 0.1}, aliases=(("not", "text"),))
    assert store.get("half") is None
    assert store.frame().empty


def test_non_finite_numbers_are_stored_as_null_with_the_status(store):
    result = {"test_acc": None, "param_change": [0.5, float("nan")], "history": [{"train_loss": float("inf")}],
              "status": "diverged", "diverged_epoch": 1}
    store.put("k", CONFIG, result)
    assert store.get("k") == {**result, "param_change": [0.5, None], "history": [{"train_loss": None}]}
    assert list(store.frame()["status"]) == ["diverged"]


def test_failed_runs_are_recorded_but_never_found_and_never_replace_a_finished_one(store):
    store.put_failed("f", CONFIG, "RuntimeError: boom")
    assert store.get("f") is None and list(store.frame()["status"]) == ["failed"]
    store.put("f", CONFIG, {"test_acc": 0.4})  # the retry succeeds
    store.put_failed("f", CONFIG, "a late report of an earlier failure")
    assert store.get("f") == {"test_acc": 0.4} and list(store.frame()["status"]) == ["ok"]


def test_a_store_made_before_statuses_gets_the_column(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE runs (key TEXT PRIMARY KEY, setup TEXT NOT NULL, shift TEXT NOT NULL, "
                     "corruption TEXT, severity INTEGER, method TEXT NOT NULL, seed INTEGER NOT NULL, shots INTEGER, "
                     "config TEXT NOT NULL, result TEXT NOT NULL, created REAL NOT NULL)")
        conn.execute("INSERT INTO runs VALUES ('old', 'digits', 'output', NULL, 0, 'full', 0, 100, '{}', "
                     "'{\"test_acc\": 0.5}', 0)")
    conn.close()
    store = ResultStore(path)
    assert store.get("old") == {"test_acc": 0.5} and list(store.frame()["status"]) == ["ok"]


@pytest.mark.parametrize("schema, phrase", [
    ("CREATE TABLE runs (name TEXT, value TEXT)", "a runs table without"),
    ("CREATE TABLE notes (text TEXT)", "tables notes"),
    ("CREATE TABLE runs (key TEXT, setup TEXT, shift TEXT, corruption TEXT, severity TEXT, method TEXT, seed TEXT, "
     "shots TEXT, config TEXT, result TEXT, created TEXT)", "its runs table lacks the unique key on its key column"),
    ("CREATE TABLE aliases (request TEXT, key TEXT)", "its aliases table lacks the unique key on its request column"),
])
def test_another_programs_sqlite_file_is_refused_and_left_byte_for_byte(tmp_path, schema, phrase):
    path = tmp_path / "theirs.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(schema)
        conn.execute(f"INSERT INTO {schema.split()[2]} VALUES ({', '.join('?' * schema.count(' TEXT'))})",
                     ("precious",) * schema.count(" TEXT"))
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=phrase):
        ResultStore(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["theirs.sqlite"]


def _writer(path: str, worker: int) -> None:
    s = ResultStore(path)
    for i in range(20):
        s.put(f"w{worker}-{i}", {**CONFIG, "seed": i}, {"test_acc": i / 20})


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "r.sqlite")
    ResultStore(path)
    procs = [mp.get_context("spawn").Process(target=_writer, args=(path, w)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]  # each writer finished (a crash or hang leaves rows out unnoticed)
    assert len(ResultStore(path).frame()) == 40


def _open_together(path: str, barrier, answers) -> None:
    barrier.wait()
    try:
        ResultStore(path)
    except StoreError as exc:
        answers.put(str(exc))


def test_processes_opening_a_new_store_at_once_all_get_it(tmp_path):
    """Four processes create the same new store at the same moment, 10 times over: SQLite answers the
    journal-mode race's loser 'database is locked' at once, without waiting (before the retry, most
    rounds lost an open)."""
    ctx = mp.get_context("fork")
    answers = ctx.Queue()
    for round_ in range(10):
        barrier = ctx.Barrier(4)
        procs = [ctx.Process(target=_open_together, args=(str(tmp_path / f"new{round_}.sqlite"), barrier, answers))
                 for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0] * 4  # every opener returned (a crash or hang would not answer)
    assert answers.empty()


def test_frame_has_config_and_result_columns_and_filters(store):
    store.put("a", CONFIG, {"test_acc": 0.7})
    store.put("b", {**CONFIG, "method": "linear-probe"}, {"test_acc": 0.3})
    df = store.frame()
    assert set(df["method"]) == {"full", "linear-probe"}
    assert {"test_acc", "epochs", "key"} <= set(df.columns)
    only = store.frame(method="linear-probe")
    assert list(only["test_acc"]) == [0.3]


def test_frame_filters_by_code_version_and_refuses_unknown_filters(store):
    store.put("old", {**CONFIG, "code_version": "aaa"}, {"test_acc": 0.1})
    store.put("new", {**CONFIG, "seed": 1, "code_version": "bbb"}, {"test_acc": 0.2})
    assert list(store.frame(code_version="bbb")["key"]) == ["new"]
    assert list(store.frame(["test_acc"], setup="digits", code_version="aaa")["test_acc"]) == [0.1]
    assert store.frame(code_version="ccc").empty
    with pytest.raises(ValueError, match="epochs"):
        store.frame(epochs=3)  # not an indexed column: a typo must not return every run


def test_wal_mode(store):
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_runs_stored_before_a_recipe_setting_existed_read_as_its_default(store):
    """A setting added later (schedule) defaults to what runs did before it: older rows read as that."""
    from autoft_core.core.recipe import Recipe

    store.put("old", {**CONFIG, "lr": 0.003}, {"test_acc": 0.5})
    store.put("new", {**CONFIG, "lr": 0.003, "schedule": "linear"}, {"test_acc": 0.6})
    df = store.frame().set_index("key")
    assert df.loc["old", "schedule"] == Recipe().schedule == "constant" and df.loc["new", "schedule"] == "linear"
    assert df.loc["old", "optimizer"] == Recipe().optimizer  # a setting the config lacks entirely


def test_frame_with_chosen_result_fields_equals_the_full_frame_on_them(store):
    """Reading only some result fields (SQLite's json_extract) gives those columns as parsing every result does."""
    store.put("a", CONFIG, {"test_acc": 0.7, "zero_shot_acc": 0.1, "history": [{"epoch": 1, "val_acc": 0.5}]})
    store.put("b", {**CONFIG, "seed": 1}, {"test_acc": None, "zero_shot_acc": 0.2, "history": [], "status": "diverged"})
    full, few = store.frame(), store.frame(result_fields=["test_acc", "zero_shot_acc"])
    assert "history" in full and "history" not in few
    columns = ["key", "seed", "status", "test_acc", "zero_shot_acc"]
    pd.testing.assert_frame_equal(few[columns], full[columns])
    with pytest.raises(ValueError):
        store.frame(result_fields=["test_acc') FROM runs; --"])
