"""The result store: one SQLite row per run, keyed by a hash of the run's full config.

SQLite in WAL mode lets the dashboard read while a sweep writes; each write is one transaction, so a
crash leaves either the whole row or none. Every row has a status: "ok", "diverged" (training blew up:
a result like any other, never recomputed) or "failed" (an error; `get` ignores it, so it is retried).
Non-finite numbers are stored as null. A store that cannot be read or written is a StoreError naming
the file and what to do; a finished run whose write fails goes to a recovery JSON file beside the
store (`import_recovered` puts it back). `frame()` gives pandas a DataFrame for tables and charts.
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.recipe import field_info
from .errors import StoreError
from .paths import cache_dir

if TYPE_CHECKING:
    import pandas as pd

_TABLES = (
    """CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    setup TEXT NOT NULL, shift TEXT NOT NULL, corruption TEXT, severity INTEGER,
    method TEXT NOT NULL, seed INTEGER NOT NULL, shots INTEGER,
    config TEXT NOT NULL, result TEXT NOT NULL, created REAL NOT NULL, status TEXT NOT NULL DEFAULT 'ok')""",
    "CREATE TABLE IF NOT EXISTS aliases (request TEXT PRIMARY KEY, key TEXT NOT NULL REFERENCES runs(key))",
)
_COLUMNS = ("setup", "shift", "corruption", "severity", "method", "seed", "shots")
_STORED_COLUMNS = ("key", *_COLUMNS, "config", "result", "created")  # every store has them (status came later)
_UNIQUE_KEYS = {"runs": "key", "aliases": "request"}  # the column each table's writes (upserts) need unique
_FILTERS = {**{c: c for c in _COLUMNS}, "code_version": "json_extract(config, '$.code_version')"}
STATUSES = ("ok", "diverged", "failed")
_LOCK_WAIT_S = 60  # how long a statement waits for another process's lock
_KEYS_PER_QUERY = 400  # keys bound per look-up query (each bound twice; SQLite allows 32,766 parameters)
_INSERT = (f"INSERT INTO runs (key, {', '.join(_COLUMNS)}, config, result, created, status) "
           f"VALUES ({', '.join('?' * (len(_COLUMNS) + 5))}) ON CONFLICT(key) DO UPDATE SET "
           + ", ".join(f"{c} = excluded.{c}" for c in (*_COLUMNS, "config", "result", "created", "status")))
_ALIAS = "INSERT OR REPLACE INTO aliases (request, key) VALUES (?, ?)"


def default_store_path() -> Path:
    """The store every command and the dashboard share unless told otherwise (in the cache folder)."""
    return cache_dir() / "results.sqlite"


def finite_json(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def _unique(conn: sqlite3.Connection, table: str, column: str) -> bool:
    """Whether `table` has a primary key or a full unique index on `column` alone (what its upserts conflict on)."""
    indexes = conn.execute('SELECT name FROM pragma_index_list(?) WHERE "unique" AND NOT partial', (table,))
    return any([row[0] for row in conn.execute("SELECT name FROM pragma_index_info(?)", (name,))] == [column]
               for (name,) in indexes.fetchall())


def _writable(folder: Path) -> bool:
    """Whether files can be made in `folder` (the OS's answer: read-only mounts count even for root)."""
    return os.access(folder, os.W_OK | os.X_OK)


class ResultStore:
    """Runs by config hash; safe for several processes and browser tabs at once."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path else default_store_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of the result store {self.path}: {exc.strerror}; "
                             "choose another store file (--store, or AUTOFT_STORE for the dashboard)") from None
        self._prepare()

    def _prepare(self) -> None:
        """WAL mode and the tables. Two processes opening a new store at once race for the journal-mode
        change, and SQLite answers the loser 'database is locked' at once, without waiting for the busy
        timeout: that answer is retried for as long as any statement here waits for a lock."""
        deadline = time.monotonic() + _LOCK_WAIT_S
        while True:
            try:
                with self._connect() as conn:
                    self._refuse_foreign(conn)
                    conn.execute("PRAGMA journal_mode=WAL")
                    self._create_tables(conn)
                return
            except StoreError as exc:
                if "database is locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _refuse_foreign(self, conn: sqlite3.Connection) -> None:
        """StoreError, before anything is changed, when the file is not a store this tool made: tables of its
        own, a `runs` table without this store's columns, or a table without the unique key its writes rely on
        (a hand-made copy: every write would fail after the run, or pile up duplicate rows)."""
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                  if not row[0].startswith("sqlite_")}
        other = sorted(tables - {"runs", "aliases"})
        columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
        missing = sorted(set(_STORED_COLUMNS) - columns) if "runs" in tables else []
        unkeyed = [(table, column) for table, column in _UNIQUE_KEYS.items()
                   if table in tables and not _unique(conn, table, column)]
        if other:
            what = f"tables {', '.join(other[:3])}"
        elif missing:
            what = f"a runs table without {', '.join(missing[:3])}"
        elif unkeyed:
            what = f"its {unkeyed[0][0]} table lacks the unique key on its {unkeyed[0][1]} column"
        else:
            return
        raise StoreError(f"{self.path} is not a result store this tool made ({what}); it was left as it is: "
                         "point --store (or AUTOFT_STORE for the dashboard) at another file, or move this one away")

    @staticmethod
    def _create_tables(conn: sqlite3.Connection) -> None:
        """The tables if absent (a new or deleted store), and the status column stores made before it lack."""
        for statement in _TABLES:
            conn.execute(statement)
        if "status" not in {row[1] for row in conn.execute("PRAGMA table_info(runs)")}:
            conn.execute("ALTER TABLE runs ADD COLUMN status TEXT NOT NULL DEFAULT 'ok'")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One transaction: commits on success, rolls back on any exception; SQLite errors become StoreError."""
        conn = None
        try:
            conn = sqlite3.connect(self.path, timeout=_LOCK_WAIT_S)
            with conn:
                yield conn
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        finally:
            if conn is not None:
                conn.close()

    def _error(self, exc: sqlite3.Error) -> StoreError:
        """What went wrong with this store file, in one line, with what to do."""
        text = str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text):
            return StoreError(f"the result store {self.path} is damaged (SQLite: {text}); move it away or delete "
                              "it (a new, empty store is made in its place; the runs in it are lost)")
        refused = any(word in text for word in ("readonly", "read-only", "unable to open"))
        if refused and not _writable(self.path.parent):
            return StoreError(f"cannot write in the folder {self.path.parent} of the result store {self.path} (SQLite "
                              "keeps the store and its journal files there): make that folder writable, or choose a "
                              "store file in a writable folder (--store PATH, or AUTOFT_STORE for the dashboard)")
        if "readonly" in text or "read-only" in text:
            return StoreError(f"the result store {self.path} is read-only; make it writable, or choose another "
                              "store file (--store, or AUTOFT_STORE for the dashboard)")
        return StoreError(f"cannot use the result store {self.path} (SQLite: {text}); check the file and its "
                          "folder, or choose another store file (--store, or AUTOFT_STORE for the dashboard)")

    def check_writable(self) -> None:
        """Raise StoreError now, before any computing, when a finished run could not be written."""
        with self._connect() as conn:
            self._create_tables(conn)
            conn.execute("DELETE FROM aliases WHERE 0")  # takes the write lock; changes nothing

    def get(self, key: str) -> dict | None:
        """The stored result of run `key` (a run key or an alias of one), or None; failed runs count as absent."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, dict]:
        """The stored results of those of `keys` (run keys or aliases) that are stored, by the key asked: one
        connection and one query per chunk of keys (a warm sweep asks for hundreds at once)."""
        rows: dict[str, str] = {}
        with self._connect() as conn:
            for start in range(0, len(keys), _KEYS_PER_QUERY):
                chunk = list(keys[start:start + _KEYS_PER_QUERY])
                marks = ", ".join("?" * len(chunk))
                found = conn.execute(f"SELECT key, 1, result FROM runs WHERE key IN ({marks}) AND status != 'failed' "
                                     "UNION ALL SELECT a.request, 0, r.result FROM aliases a JOIN runs r ON r.key = "
                                     f"a.key WHERE a.request IN ({marks}) AND r.status != 'failed'", chunk + chunk)
                for key, own, result in found:
                    if own or key not in rows:  # a run's own key wins over an alias of the same text
                        rows[key] = result
        return {key: json.loads(result) for key, result in rows.items()}

    def put(self, key: str, config: dict, result: dict, aliases: tuple[str, ...] = ()) -> None:
        """Store one run and its aliases in one transaction (serialised first: a bad value writes nothing).

        When the write fails, the record goes to a recovery file and the StoreError says where."""
        config, result = finite_json(config), finite_json(result)
        status = result.get("status", "ok")
        if status not in STATUSES:
            raise ValueError(f"run status {status!r} is not one of {STATUSES}")
        row = (key, *(config.get(c) for c in _COLUMNS), json.dumps(config, sort_keys=True),
               json.dumps(result, allow_nan=False), time.time(), status)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # the store (and its folder) may have been deleted
            with self._connect() as conn:
                self._create_tables(conn)
                conn.execute(_INSERT if status != "failed" else _INSERT + " WHERE runs.status = 'failed'", row)
                conn.executemany(_ALIAS, [(a, key) for a in aliases if a != key])
        except (StoreError, OSError) as exc:
            saved = self._recover({"key": key, "config": config, "result": result, "aliases": list(aliases)})
            raise StoreError(f"{exc}. The finished run was saved to {saved}; once the store is fixed, "
                             f"ResultStore().import_recovered('{saved}') puts it in") from None

    def put_failed(self, key: str, config: dict, error: str) -> None:
        """Record that run `key` failed (never replacing a finished run); `get` still treats it as absent."""
        self.put(key, config, {"status": "failed", "error": error})

    def _recover(self, record: dict) -> Path:
        """Write `record` beside the store (or, if that folder is unwritable, to the temporary folder)."""
        name = f"{self.path.name}.recovered-{record['key']}.json"
        for folder in (self.path.parent, Path(tempfile.gettempdir())):
            try:
                (folder / name).write_text(json.dumps(record, allow_nan=False))
                return folder / name
            except OSError:
                continue
        raise StoreError(f"could not write run {record['key']} to the result store {self.path} nor a recovery "
                         "file beside it or in the temporary folder")

    def import_recovered(self, path: Path | str) -> None:
        """Put a run saved by a failed write (its recovery file) into this store."""
        record = json.loads(Path(path).read_text())
        self.put(record["key"], record["config"], record["result"], tuple(record["aliases"]))

    def alias(self, request: str, key: str) -> None:
        """Let `request` (a config as asked, before defaults) find run `key`."""
        if request != key:
            with self._connect() as conn:
                conn.execute(_ALIAS, (request, key))

    def frame(self, result_fields: Sequence[str] | None = None, **filters: object) -> "pd.DataFrame":
        """All runs (optionally filtered by equality of indexed columns or of `code_version`) with config and
        result fields and status as columns; `result_fields` names the result fields wanted (scalars; default
        all): Table 1 needs one, and reading just it (SQLite's json_extract) spares parsing every run's
        history and weights; filtering by code version in SQL spares parsing the configs of older versions."""
        import pandas as pd  # heavy; only the tables need it

        if result_fields is not None and not all(name.isidentifier() for name in result_fields):
            raise ValueError(f"result field names must be identifiers: {list(result_fields)}")
        unknown = set(filters) - set(_FILTERS)
        if unknown:
            raise ValueError(f"runs can be filtered by {', '.join(_FILTERS)}, not {', '.join(sorted(unknown))}")
        where = " AND ".join(f"{_FILTERS[c]} = ?" for c in filters)
        wanted = ("result" if result_fields is None
                  else ", ".join(f"json_extract(result, '$.{name}') AS \"{name}\"" for name in result_fields))
        sql = (f"SELECT key, config, created, status{', ' + wanted if wanted else ''} FROM runs"
               + (f" WHERE {where}" if where else ""))
        with self._connect() as conn:
            raw = pd.read_sql(sql, conn, params=list(filters.values()))
        if raw.empty:
            return pd.DataFrame()
        # one column per top-level field, nested values kept whole (json_normalize would deep-copy them all)
        configs = pd.DataFrame([json.loads(c) for c in raw["config"]])
        for name, default, *_ in field_info():  # runs stored before a setting existed ran at its default
            configs[name] = configs[name].fillna(default) if name in configs else default
        results = (pd.DataFrame([json.loads(r) for r in raw["result"]]) if result_fields is None
                   else raw[list(result_fields)])
        return pd.concat([raw[["key", "created", "status"]], configs,
                          results.drop(columns=[*configs.columns, "status"], errors="ignore")], axis=1)
