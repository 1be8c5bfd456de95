"""The SQLite result store: hits and misses, aliases, atomic writes, concurrent writers, DataFrames."""
from __future__ import annotations

import multiprocessing as mp
import sqlite3

import pytest

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


def test_a_failed_write_leaves_no_row(store):
    with pytest.raises(ValueError):
        store.put("bad", CONFIG, {"test_acc": float("nan")})  # not valid JSON: rejected before writing
    assert store.get("bad") is None
    with pytest.raises(sqlite3.Error):  # the alias cannot be bound, inside the transaction: all rolls back
        store.put("half", CONFIG, {"test_acc": 0.1}, aliases=(object(),))
    assert store.get("half") is None
    assert store.frame().empty


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
    assert len(ResultStore(path).frame()) == 40


def test_frame_has_config_and_result_columns_and_filters(store):
    store.put("a", CONFIG, {"test_acc": 0.7})
    store.put("b", {**CONFIG, "method": "linear-probe"}, {"test_acc": 0.3})
    df = store.frame()
    assert set(df["method"]) == {"full", "linear-probe"}
    assert {"test_acc", "epochs", "key"} <= set(df.columns)
    only = store.frame(method="linear-probe")
    assert list(only["test_acc"]) == [0.3]


def test_wal_mode(store):
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
