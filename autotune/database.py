"""The tuning database: measured schedules kept in one SQLite file.

Every measured candidate becomes a ``TuningRecord`` (task key, target, schedule trace, costs or
error). The file is opened in WAL mode, each write is one SQLite transaction, so a process killed
at any moment leaves only whole records behind, and several processes may write at once (a busy
timeout plus a retry on ``database is locked``). ``best`` is an indexed query on a stored mean
cost; ``has`` looks a schedule up by a hash of its text so a candidate is never measured twice.

Example::

    with Database("tuning.db") as db:
        db.commit_record(TuningRecord("key", "llvm -mcpu=znver3", "pkg.mod:matmul",
                                      schedule=s.to_json(), costs=(1.2e-3, 1.1e-3)))
        [best] = db.best("key", "llvm -mcpu=znver3")
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import random
import sqlite3
import threading
import time
from typing import Any, Callable, Iterable, NamedTuple, Sequence, TypeVar

from tensorlang.errors import UserError

__all__ = ["Database", "TuningRecord", "TaskSummary", "RunInfo", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_key TEXT NOT NULL,
    target TEXT NOT NULL,
    workload TEXT NOT NULL,
    schedule TEXT NOT NULL,
    schedule_hash TEXT NOT NULL,
    costs TEXT NOT NULL,
    mean_cost REAL,
    error TEXT,
    created REAL NOT NULL,
    run_id TEXT,
    extra TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_best ON records (task_key, target, mean_cost, created);
CREATE INDEX IF NOT EXISTS records_schedule ON records (task_key, target, schedule_hash);
CREATE INDEX IF NOT EXISTS records_run ON records (run_id);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    meta TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL
);
"""

_COLUMNS = "task_key, target, workload, schedule, costs, error, created, run_id, extra"
_INSERT = ("INSERT INTO records (task_key, target, workload, schedule, schedule_hash, costs, "
           "mean_cost, error, created, run_id, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class TuningRecord:
    """One measured (or failed) candidate schedule of a task.

    ``schedule`` is a JSON trace (``tl.Schedule.to_json()`` or a sketch record); ``costs`` are
    seconds per run, empty when the candidate failed, in which case ``error`` says why.
    ``workload`` is the workload's importable name, kept for people reading the file.

    Example::

        rec = TuningRecord("key", "llvm", "pkg.mod:matmul", "{...}", costs=(1e-3, 2e-3))
        rec.mean_cost  # 0.0015
    """

    task_key: str
    target: str
    workload: str
    schedule: str
    costs: tuple[float, ...] = ()
    error: str | None = None
    created: float = dataclasses.field(default_factory=time.time)
    run_id: str | None = None
    extra: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("task_key", "target", "workload", "schedule"):
            if not isinstance(getattr(self, name), str):
                raise UserError(f"TuningRecord.{name} must be a str, "
                                f"got {type(getattr(self, name)).__name__}")
        try:
            costs = tuple(float(c) for c in self.costs)
        except (TypeError, ValueError):
            raise UserError(f"TuningRecord.costs must be numbers (seconds), got {self.costs!r}")
        object.__setattr__(self, "costs", costs)
        object.__setattr__(self, "created", float(self.created))
        if self.error is not None and not isinstance(self.error, str):
            object.__setattr__(self, "error", str(self.error))
        if not isinstance(self.extra, dict):
            raise UserError(f"TuningRecord.extra must be a dict, got {type(self.extra).__name__}")

    @property
    def mean_cost(self) -> float:
        """Mean seconds per run; ``inf`` when the candidate failed or has no costs."""
        if self.error is not None or not self.costs:
            return math.inf
        return sum(self.costs) / len(self.costs)

    @property
    def ok(self) -> bool:
        """Whether the candidate was measured without error."""
        return math.isfinite(self.mean_cost)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the JSON lines format of ``export_jsonl``)."""
        d = dataclasses.asdict(self)
        d["costs"] = list(self.costs)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TuningRecord:
        """The inverse of ``to_dict``; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise UserError(f"unknown TuningRecord fields: {sorted(unknown)}")
        return cls(**d)


class TaskSummary(NamedTuple):
    """A (task key, target) pair in the database with its number of records."""
    task_key: str
    target: str
    count: int


class RunInfo(NamedTuple):
    """A tuning run: its metadata, start/finish times and how many records it committed."""
    run_id: str
    meta: dict
    started: float
    finished: float | None
    trials: int


def schedule_hash(schedule: str) -> str:
    """The hash ``has`` and duplicate detection index schedules by."""
    return hashlib.sha256(schedule.encode("utf-8")).hexdigest()


def _costs_text(costs: tuple[float, ...]) -> str:
    return json.dumps(list(costs))


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    msg = str(exc).lower()
    return "locked" in msg or "busy" in msg


class Database:
    """A tuning database in one SQLite file (or ``":memory:"``).

    Safe against a kill at any moment (every write is one transaction) and shared by several
    processes (each opens its own ``Database`` on the same path). A file that is not SQLite, or
    written by a newer tensorlang, raises ``UserError`` naming the path.

    Example::

        with Database("tuning.db") as db:
            if not db.has(key, target, sched):
                db.commit_record(TuningRecord(key, target, "pkg.mod:fn", sched, costs=(t,)))
            best = db.best(key, target, k=5)
    """

    def __init__(self, path: str | os.PathLike, *, timeout: float = 30.0) -> None:
        self.path = os.fspath(path)
        self._timeout = timeout
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None,
                                         check_same_thread=False)
        except sqlite3.Error as exc:
            raise UserError(f"cannot open tuning database {self.path!r}: {exc}") from None
        try:
            self._retry(self._setup)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise UserError(f"{self.path!r} is not a tensorlang tuning database "
                            f"(SQLite says: {exc})") from None
        except BaseException:
            self._conn.close()
            raise

    # -- opening ---------------------------------------------------------------------------

    def _setup(self) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")  # "memory" for :memory:, which is fine
        conn.execute("PRAGMA synchronous = NORMAL")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "schema_version" not in tables:
            raise UserError(f"{self.path!r} is an SQLite file but not a tensorlang tuning "
                            f"database (it has tables {sorted(tables)[:5]})")
        if "schema_version" in tables:
            self._check_version()
            if tables >= {"records", "runs"}:
                return
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):  # executescript would commit on its own
                if statement.strip():
                    conn.execute(statement)
            if conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 0:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._check_version()

    def _check_version(self) -> None:
        row = self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        version = row[0] if row else None
        if version is not None and version > SCHEMA_VERSION:
            raise UserError(f"tuning database {self.path!r} has schema version {version}, newer "
                            f"than this tensorlang understands ({SCHEMA_VERSION}); upgrade "
                            f"tensorlang or use another file")

    @property
    def schema_version(self) -> int:
        """The schema version stored in the file."""
        return self._read(lambda c: c.execute("SELECT MAX(version) FROM schema_version")
                          .fetchone()[0])

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({self.path!r})"

    # -- transactions with retry -----------------------------------------------------------

    def _retry(self, fn: Callable[[], _T]) -> _T:
        # The busy timeout covers most contention; a lock upgrade that SQLite refuses outright
        # (or a busy handler that gave up) is retried here with jittered backoff.
        deadline = time.monotonic() + self._timeout
        delay = 0.001
        while True:
            try:
                with self._lock:
                    if self._conn is None:
                        raise UserError(f"tuning database {self.path!r} is closed")
                    return fn()
            except sqlite3.OperationalError as exc:
                if not _is_locked(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.1)

    def _write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        def attempt() -> _T:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result
        return self._retry(attempt)

    def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        return self._retry(lambda: fn(self._conn))

    # -- records ---------------------------------------------------------------------------

    @staticmethod
    def _row(record: TuningRecord) -> tuple:
        if not isinstance(record, TuningRecord):
            raise UserError(f"expected a TuningRecord, got {type(record).__name__}")
        mean = record.mean_cost
        return (record.task_key, record.target, record.workload, record.schedule,
                schedule_hash(record.schedule), _costs_text(record.costs),
                mean if math.isfinite(mean) else None, record.error, record.created,
                record.run_id, json.dumps(record.extra))

    @staticmethod
    def _record(row: tuple) -> TuningRecord:
        task_key, target, workload, schedule, costs, error, created, run_id, extra = row
        return TuningRecord(task_key, target, workload, schedule, tuple(json.loads(costs)),
                            error, created, run_id, json.loads(extra))

    def commit_record(self, record: TuningRecord) -> None:
        """Store one record in one transaction."""
        row = self._row(record)
        self._write(lambda c: c.execute(_INSERT, row))

    def commit_records(self, records: Iterable[TuningRecord]) -> int:
        """Store many records in one transaction; returns how many."""
        rows = [self._row(r) for r in records]
        if rows:
            self._write(lambda c: c.executemany(_INSERT, rows))
        return len(rows)

    def update_costs(self, record: TuningRecord, costs: Sequence[float],
                     extra: dict | None = None) -> int:
        """Replace the costs (and merge ``extra`` into the extras) of the stored record with
        ``record``'s task, target and schedule; returns how many rows changed (0 when it is
        not stored). Used to re-measure the best candidates of a run side by side, so that
        ``best`` ranks them on comparable numbers rather than on one noisy first timing.
        """
        updated = dataclasses.replace(record, costs=tuple(costs), error=None,
                                      extra={**record.extra, **(extra or {})})
        row = self._row(updated)
        sql = ("UPDATE records SET costs = ?, mean_cost = ?, error = ?, extra = ? "
               "WHERE task_key = ? AND target = ? AND schedule_hash = ?")
        params = (row[5], row[6], row[7], row[10], row[0], row[1], row[4])
        return self._write(lambda c: c.execute(sql, params).rowcount)

    def records(self, task_key: str, target: str | None = None) -> list[TuningRecord]:
        """All records of a task (on one target, or all), oldest first."""
        sql = f"SELECT {_COLUMNS} FROM records WHERE task_key = ?"
        params: tuple = (task_key,)
        if target is not None:
            sql += " AND target = ?"
            params += (target,)
        rows = self._read(lambda c: c.execute(sql + " ORDER BY created, id", params).fetchall())
        return [self._record(r) for r in rows]

    def best(self, task_key: str, target: str, k: int = 1) -> list[TuningRecord]:
        """The ``k`` successful records with the lowest mean cost, best first (older wins a tie).

        Returns fewer than ``k`` (possibly none) when the task has fewer successful records.
        """
        if k < 1:
            return []
        sql = (f"SELECT {_COLUMNS} FROM records WHERE task_key = ? AND target = ? "
               f"AND mean_cost IS NOT NULL ORDER BY mean_cost, created, id LIMIT ?")
        rows = self._read(lambda c: c.execute(sql, (task_key, target, int(k))).fetchall())
        return [self._record(r) for r in rows]

    def has(self, task_key: str, target: str, schedule: str) -> bool:
        """Whether this schedule of the task was already recorded (measured or failed)."""
        sql = ("SELECT 1 FROM records WHERE task_key = ? AND target = ? AND schedule_hash = ? "
               "AND schedule = ? LIMIT 1")
        params = (task_key, target, schedule_hash(schedule), schedule)
        return self._read(lambda c: c.execute(sql, params).fetchone() is not None)

    def count(self, task_key: str | None = None, target: str | None = None) -> int:
        """Number of records, optionally of one task and/or one target."""
        clauses, params = [], []
        for column, value in (("task_key", task_key), ("target", target)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT COUNT(*) FROM records"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        return self._read(lambda c: c.execute(sql, params).fetchone()[0])

    def tasks(self) -> list[TaskSummary]:
        """The distinct (task key, target) pairs with their record counts, sorted."""
        sql = ("SELECT task_key, target, COUNT(*) FROM records GROUP BY task_key, target "
               "ORDER BY task_key, target")
        return [TaskSummary(*r) for r in self._read(lambda c: c.execute(sql).fetchall())]

    # -- JSON lines ------------------------------------------------------------------------

    def export_jsonl(self, path_or_file: str | os.PathLike | io.TextIOBase,
                     task_key: str | None = None) -> int:
        """Write records (all, or one task's) as JSON lines, oldest first; returns how many."""
        sql = f"SELECT {_COLUMNS} FROM records"
        params: tuple = ()
        if task_key is not None:
            sql += " WHERE task_key = ?"
            params = (task_key,)
        rows = self._read(lambda c: c.execute(sql + " ORDER BY created, id", params).fetchall())
        lines = [json.dumps(self._record(r).to_dict()) + "\n" for r in rows]
        if hasattr(path_or_file, "write"):
            path_or_file.writelines(lines)
        else:
            with open(path_or_file, "w", encoding="utf-8") as f:
                f.writelines(lines)
        return len(lines)

    def import_jsonl(self, path_or_file: str | os.PathLike | io.TextIOBase) -> int:
        """Add the records of a JSON lines file, skipping duplicates; returns how many were added.

        A duplicate has the same task key, target, schedule and costs as a record already stored
        (or earlier in the file). The whole file is imported in one transaction, or not at all.
        """
        if hasattr(path_or_file, "read"):
            name = getattr(path_or_file, "name", "<file>")
            text = path_or_file.read()
        else:
            name = os.fspath(path_or_file)
            try:
                with open(name, encoding="utf-8") as f:
                    text = f.read()
            except OSError as exc:
                raise UserError(f"cannot read tuning records from {name!r}: {exc}") from None
        rows = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                if not isinstance(d, dict):
                    raise ValueError("not a JSON object")
                rows.append(self._row(TuningRecord.from_dict(d)))
            except (ValueError, TypeError) as exc:
                raise UserError(f"{name}:{lineno}: not a tuning record: {exc}") from None

        def insert(conn: sqlite3.Connection) -> int:
            added = 0
            dup = ("SELECT 1 FROM records WHERE task_key = ? AND target = ? AND schedule_hash = ? "
                   "AND costs = ? LIMIT 1")
            for row in rows:
                if conn.execute(dup, (row[0], row[1], row[4], row[5])).fetchone() is None:
                    conn.execute(_INSERT, row)
                    added += 1
            return added
        return self._write(insert)

    # -- runs (resume) ---------------------------------------------------------------------

    def start_run(self, run_id: str, meta: dict | None = None) -> None:
        """Record that a tuning run began; starting a known run again resumes it.

        Resuming replaces the metadata, keeps the original start time and clears ``finished``.
        """
        meta_text = json.dumps(meta or {})
        self._write(lambda c: c.execute(
            "INSERT INTO runs (run_id, meta, started, finished) VALUES (?, ?, ?, NULL) "
            "ON CONFLICT (run_id) DO UPDATE SET meta = excluded.meta, finished = NULL",
            (run_id, meta_text, time.time())))

    def finish_run(self, run_id: str) -> None:
        """Mark a run finished; an unknown run id is a ``UserError``."""
        def finish(conn: sqlite3.Connection) -> int:
            return conn.execute("UPDATE runs SET finished = ? WHERE run_id = ?",
                                (time.time(), run_id)).rowcount
        if self._write(finish) == 0:
            raise UserError(f"no tuning run {run_id!r} in {self.path!r}")

    def run(self, run_id: str) -> RunInfo | None:
        """One run's bookkeeping, or ``None`` when unknown."""
        runs = self._runs("WHERE run_id = ?", (run_id,))
        return runs[0] if runs else None

    def all_runs(self) -> list[RunInfo]:
        """Every tuning run, oldest first (their metadata names the tasks they tuned)."""
        return self._runs("", ())

    def unfinished_runs(self) -> list[RunInfo]:
        """Runs started but never finished (interrupted), oldest first."""
        return self._runs("WHERE finished IS NULL", ())

    def _runs(self, where: str, params: tuple) -> list[RunInfo]:
        sql = ("SELECT run_id, meta, started, finished, "
               "(SELECT COUNT(*) FROM records WHERE records.run_id = runs.run_id) "
               f"FROM runs {where} ORDER BY started, rowid")
        rows = self._read(lambda c: c.execute(sql, params).fetchall())
        return [RunInfo(r[0], json.loads(r[1]), r[2], r[3], r[4]) for r in rows]


# -- merging -----------------------------------------------------------------------------------

def merge_databases(sources: Iterable[str | os.PathLike | Database],
                    dest: str | os.PathLike | Database) -> int:
    """Copy the records of ``sources`` into ``dest`` without duplicates; returns how many
    records were added.

    A duplicate has the same task key, target and schedule as a record already in ``dest`` or
    added earlier in the merge: the first one seen is kept (``dest``'s own, then the sources in
    order, oldest record first). The tuning runs the records belong to are copied too (so
    ``tune``'s transfer learning finds their tasks). ``dest`` is created when missing and
    written in one transaction; a source file must exist, and one that is ``dest`` itself is
    skipped.

    Raises:
        UserError: a source file is missing, or a file is not a tensorlang tuning database.

    Example:
        >>> merge_databases(["machine_a.db", "machine_b.db"], "all.db")   # doctest: +SKIP
        412
    """
    target = dest if isinstance(dest, Database) else Database(dest)
    rows: list[tuple] = []
    runs: list[tuple] = []
    try:
        for source in sources:
            if not isinstance(source, Database):
                path = os.fspath(source)
                if path != ":memory:" and not os.path.exists(path):
                    raise UserError(f"merge_databases: no such tuning database {path!r}")
                if _same_file(path, target.path):
                    continue
            db = source if isinstance(source, Database) else Database(source)
            try:
                rows += db._read(lambda c: c.execute(
                    f"SELECT {_COLUMNS} FROM records ORDER BY created, id").fetchall())
                runs += db._read(lambda c: c.execute(
                    "SELECT run_id, meta, started, finished FROM runs").fetchall())
            finally:
                if db is not source:
                    db.close()

        def insert(conn: sqlite3.Connection) -> int:
            seen: set = set()
            added = 0
            dup = ("SELECT 1 FROM records WHERE task_key = ? AND target = ? AND schedule_hash = ? "
                   "AND schedule = ? LIMIT 1")
            for row in rows:
                new = Database._row(Database._record(row))
                key = (new[0], new[1], new[4], new[3])
                if key in seen or conn.execute(dup, key).fetchone() is not None:
                    continue
                seen.add(key)
                conn.execute(_INSERT, new)
                added += 1
            conn.executemany("INSERT OR IGNORE INTO runs (run_id, meta, started, finished) "
                             "VALUES (?, ?, ?, ?)", runs)
            return added
        return target._write(insert)
    finally:
        if target is not dest:
            target.close()


def _same_file(a: str, b: str) -> bool:
    try:
        return a != ":memory:" and b != ":memory:" and os.path.samefile(a, b)
    except OSError:
        return False


__all__ += ["merge_databases"]
