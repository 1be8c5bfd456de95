"""The result store: one SQLite row per run, keyed by a hash of the run's full config.

SQLite in WAL mode lets the dashboard read while a sweep writes; each write is one transaction, so a
crash leaves either the whole row or none. `frame()` gives pandas a DataFrame for tables and charts.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .paths import cache_dir

if TYPE_CHECKING:
    import pandas as pd

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    setup TEXT NOT NULL, shift TEXT NOT NULL, corruption TEXT, severity INTEGER,
    method TEXT NOT NULL, seed INTEGER NOT NULL, shots INTEGER,
    config TEXT NOT NULL, result TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS aliases (request TEXT PRIMARY KEY, key TEXT NOT NULL REFERENCES runs(key))
"""
_COLUMNS = ("setup", "shift", "corruption", "severity", "method", "seed", "shots")


def default_store_path() -> Path:
    return cache_dir() / "results.sqlite"


class ResultStore:
    """Runs by config hash; safe for several processes and browser tabs at once."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path else default_store_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=60)
        try:
            with conn:  # commits on success, rolls back on any exception
                yield conn
        finally:
            conn.close()

    def get(self, key: str) -> dict | None:
        """The stored result of run `key` (a run key or an alias of one), or None."""
        with self._connect() as conn:
            row = conn.execute("SELECT result FROM runs WHERE key = ? UNION ALL SELECT r.result FROM aliases a "
                               "JOIN runs r ON r.key = a.key WHERE a.request = ?", (key, key)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, config: dict, result: dict, aliases: tuple[str, ...] = ()) -> None:
        """Store one run and its aliases in one transaction (serialised first: a bad value writes nothing)."""
        row = (key, *(config.get(c) for c in _COLUMNS), json.dumps(config, sort_keys=True),
               json.dumps(result, allow_nan=False), time.time())
        with self._connect() as conn:
            conn.execute(f"INSERT OR REPLACE INTO runs (key, {', '.join(_COLUMNS)}, config, result, created) "
                         f"VALUES ({', '.join('?' * (len(_COLUMNS) + 4))})", row)
            conn.executemany("INSERT OR REPLACE INTO aliases (request, key) VALUES (?, ?)",
                             [(a, key) for a in aliases if a != key])

    def alias(self, request: str, key: str) -> None:
        """Let `request` (a config as asked, before defaults) find run `key`."""
        if request != key:
            with self._connect() as conn:
                conn.execute("INSERT OR REPLACE INTO aliases (request, key) VALUES (?, ?)", (request, key))

    def frame(self, **filters: object) -> "pd.DataFrame":
        """All runs (optionally filtered by column equality) with config and result fields as columns."""
        import pandas as pd  # heavy; only the tables need it

        where = " AND ".join(f"{c} = ?" for c in filters if c in _COLUMNS)
        sql = "SELECT key, config, result, created FROM runs" + (f" WHERE {where}" if where else "")
        with self._connect() as conn:
            raw = pd.read_sql(sql, conn, params=[v for c, v in filters.items() if c in _COLUMNS])
        if raw.empty:
            return pd.DataFrame()
        configs = pd.json_normalize([json.loads(c) for c in raw["config"]], max_level=0)
        results = pd.json_normalize([json.loads(r) for r in raw["result"]], max_level=0)
        return pd.concat([raw[["key", "created"]], configs, results.drop(columns=configs.columns, errors="ignore")],
                         axis=1)
