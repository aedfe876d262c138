"""The tuning database: records, best lookup, dedup, JSON lines, runs, concurrency and kills."""
import io
import json
import math
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from autotune.database import SCHEMA_VERSION, Database, RunInfo, TaskSummary, TuningRecord
from tensorlang.errors import UserError

TARGET = "llvm -mcpu=test -num-threads=1"


def _rec(key="k", schedule="{}", costs=(1e-3,), error=None, created=None, **kw):
    if created is not None:
        kw["created"] = created
    return TuningRecord(key, kw.pop("target", TARGET), "tests.workloads:matmul", schedule,
                        costs=costs, error=error, **kw)


@pytest.fixture
def db(tmp_path):
    with Database(tmp_path / "tuning.db") as d:
        yield d


def test_record_mean_cost():
    assert _rec(costs=(1.0, 3.0)).mean_cost == 2.0
    assert _rec(costs=()).mean_cost == math.inf
    assert _rec(costs=(1.0,), error="boom").mean_cost == math.inf
    assert _rec(costs=[1, 2]).costs == (1.0, 2.0)
    with pytest.raises(UserError, match="costs"):
        _rec(costs=("x",))


def test_round_trip(tmp_path):
    path = tmp_path / "t.db"
    recs = [_rec(schedule=json.dumps({"i": i}), costs=(i + 1e-3, i + 2e-3), created=100.0 + i,
                 run_id="r1", extra={"gflops": i}) for i in range(3)]
    recs.append(_rec(schedule='{"bad": 1}', costs=(), error="compile failed", created=50.0))
    with Database(path) as d:
        d.commit_record(recs[0])
        assert d.commit_records(recs[1:]) == 3
    with Database(path) as d:  # reopened from the file
        got = d.records("k")
        assert got == [recs[3]] + recs[:3]  # oldest first
        assert d.records("k", target="other") == []
        assert d.records("nope") == []


def test_memory_database():
    with Database(":memory:") as d:
        d.commit_record(_rec())
        assert d.count() == 1


def test_best_orders_and_excludes_errors(db):
    db.commit_records([
        _rec(schedule="a", costs=(3.0,), created=1.0),
        _rec(schedule="b", costs=(1.0, 3.0), created=3.0),   # mean 2.0, newer
        _rec(schedule="c", costs=(2.0,), created=2.0),       # mean 2.0, older: wins the tie
        _rec(schedule="d", costs=(0.1,), error="wrong numbers", created=4.0),
        _rec(schedule="e", costs=(), error="timeout", created=5.0),
        _rec(schedule="f", costs=(0.5,), target="other", created=6.0),
        _rec(key="k2", schedule="g", costs=(0.2,), created=7.0),
    ])
    assert [r.schedule for r in db.best("k", TARGET)] == ["c"]
    assert [r.schedule for r in db.best("k", TARGET, k=10)] == ["c", "b", "a"]
    assert db.best("k", TARGET, k=0) == []
    assert db.best("missing", TARGET) == []
    plan = db._conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM records WHERE task_key = ? AND target = ? "
        "AND mean_cost IS NOT NULL ORDER BY mean_cost, created, id LIMIT 1", ("k", TARGET)
    ).fetchall()
    assert any("records_best" in row[-1] for row in plan), plan


def test_has_dedup(db):
    sched = json.dumps({"split": [8, 4]})
    assert not db.has("k", TARGET, sched)
    db.commit_record(_rec(schedule=sched, costs=(), error="crash"))
    assert db.has("k", TARGET, sched)  # failed candidates are not re-measured either
    assert not db.has("k", "other", sched)
    assert not db.has("k2", TARGET, sched)
    assert not db.has("k", TARGET, json.dumps({"split": [4, 8]}))


def test_count_and_tasks(db):
    db.commit_records([_rec("a"), _rec("a"), _rec("a", target="t2"), _rec("b")])
    assert db.count() == 4
    assert db.count("a") == 3
    assert db.count("a", TARGET) == 2
    assert db.count(target="t2") == 1
    assert db.tasks() == [TaskSummary("a", TARGET, 2), TaskSummary("a", "t2", 1),
                          TaskSummary("b", TARGET, 1)]


def test_jsonl_export_import(tmp_path, db):
    recs = [_rec(schedule=str(i), costs=(float(i + 1),), created=float(i), extra={"n": i})
            for i in range(4)] + [_rec("other", error="x", costs=())]
    db.commit_records(recs)
    path = tmp_path / "out.jsonl"
    assert db.export_jsonl(path) == 5
    buf = io.StringIO()
    assert db.export_jsonl(buf, task_key="other") == 1
    assert json.loads(buf.getvalue())["error"] == "x"

    with Database(tmp_path / "fresh.db") as fresh:
        assert fresh.import_jsonl(path) == 5
        assert fresh.records("k") == recs[:4]
        assert fresh.import_jsonl(path) == 0  # all duplicates
        assert fresh.count() == 5
    # Same schedule with other costs is a new measurement; a repeat inside the file is not.
    again = _rec(schedule="0", costs=(9.0,))
    lines = json.dumps(again.to_dict()) + "\n\n" + json.dumps(again.to_dict()) + "\n"
    assert db.import_jsonl(io.StringIO(lines)) == 1
    assert db.count("k") == 5


def test_import_rejects_bad_lines(tmp_path, db):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_rec().to_dict()) + "\n{not json\n")
    with pytest.raises(UserError, match=r"bad\.jsonl:2"):
        db.import_jsonl(bad)
    assert db.count() == 0  # all or nothing
    with pytest.raises(UserError, match="unknown TuningRecord fields"):
        db.import_jsonl(io.StringIO(json.dumps({**_rec().to_dict(), "bogus": 1})))


def test_schema_version(tmp_path):
    path = tmp_path / "v.db"
    with Database(path) as d:
        assert d.schema_version == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(UserError, match=r"v\.db.*schema version"):
        Database(path)


def test_not_a_database(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is certainly not an SQLite file" * 100)
    with pytest.raises(UserError, match=r"junk\.db"):
        Database(path)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE people (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(UserError, match=r"other\.db.*not a tensorlang"):
        Database(other)


def test_wal_mode(db):
    assert db._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_closed_database(tmp_path):
    d = Database(tmp_path / "c.db")
    d.close()
    d.close()
    with pytest.raises(UserError, match="closed"):
        d.count()


def test_runs_resume(tmp_path):
    path = tmp_path / "runs.db"
    with Database(path) as d:
        d.start_run("r1", {"trials": 100, "tasks": ["k"]})
        d.commit_records([_rec(schedule=str(i), run_id="r1") for i in range(3)])
        d.start_run("r2", {})
        d.finish_run("r2")
    with Database(path) as d:  # after an interruption
        [run] = d.unfinished_runs()
        assert isinstance(run, RunInfo)
        assert (run.run_id, run.meta, run.finished, run.trials) == ("r1", {"trials": 100,
                                                                          "tasks": ["k"]}, None, 3)
        d.start_run("r1", {"trials": 100, "resumed": True})
        assert d.run("r1").started == run.started
        assert d.run("r1").meta["resumed"]
        d.finish_run("r1")
        assert d.unfinished_runs() == []
        assert d.run("r1").finished is not None
        assert d.run("nope") is None
        with pytest.raises(UserError, match="nope"):
            d.finish_run("nope")


def test_retries_when_locked(db):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "done"
    assert db._retry(flaky) == "done" and len(calls) == 3
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        db._retry(lambda: db._conn.execute("SELECT * FROM missing"))


def test_writer_waits_for_another_connection(tmp_path, db):
    other = sqlite3.connect(db.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, lambda: other.execute("COMMIT")).start()
    db.commit_record(_rec())  # blocks on the busy timeout, then lands
    assert db.count() == 1
    other.close()


def _write_many(path, worker, n):
    with Database(path) as d:
        for i in range(n):
            d.commit_record(_rec(schedule=f"{worker}-{i}", costs=(1.0 + i,), run_id=str(worker)))


def test_concurrent_writers(tmp_path):
    path = str(tmp_path / "conc.db")
    Database(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(path, w, 50)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with Database(path) as d:
        assert d.count() == 200
        for w in range(4):
            assert d.has("k", TARGET, f"{w}-49")


_CHILD = textwrap.dedent("""
    import sys
    from autotune.database import Database, TuningRecord
    db = Database(sys.argv[1])
    i = 0
    while True:
        db.commit_record(TuningRecord("k", "t", "w", '{"i": %d}' % i, costs=(1e-3, 2e-3),
                                      run_id="kill", extra={"pad": "x" * 20000}))
        print(i, flush=True)
        i += 1
""")


def test_survives_sigkill_mid_write(tmp_path):
    path = str(tmp_path / "kill.db")
    child = subprocess.Popen([sys.executable, "-c", _CHILD, path], stdout=subprocess.PIPE,
                             text=True)
    lines = 0
    try:
        deadline = time.monotonic() + 30
        while lines < 40 and time.monotonic() < deadline:
            if child.stdout.readline():
                lines += 1
            else:
                break
    finally:
        os.kill(child.pid, signal.SIGKILL)
        rest = child.stdout.read()  # lines printed before the kill but not read yet
        child.wait()
        child.stdout.close()
    lines += len(rest.splitlines())
    assert lines >= 40
    with Database(path) as d:
        committed = d.count()
        assert lines <= committed <= lines + 1
        recs = d.records("k")
        assert len(recs) == committed
        for i, r in enumerate(recs):
            assert r.costs == (1e-3, 2e-3) and r.error is None
            assert json.loads(r.schedule) == {"i": i}
            assert r.extra["pad"] == "x" * 20000 and r.run_id == "kill"
        assert d._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_merge_databases_without_duplicates(tmp_path):
    from autotune.database import merge_databases
    a, b, out = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "out.db"
    with Database(a) as d:
        d.start_run("ra", {"tasks": ["k"]})
        d.commit_records([_rec(schedule=f"s{i}", created=float(i), run_id="ra")
                          for i in range(3)])
    with Database(b) as d:
        d.commit_records([_rec(schedule="s1", costs=(5.0,), created=10.0),  # same schedule
                          _rec(schedule="s9", created=11.0),
                          _rec(schedule="s0", target="other", created=12.0)])
    assert merge_databases([a, b], out) == 5
    with Database(out) as d:
        assert d.count() == 5
        assert [r.costs for r in d.records("k", TARGET) if r.schedule == "s1"] == [(1e-3,)]
        assert d.run("ra").meta == {"tasks": ["k"]}
    assert merge_databases([a, b, out], out) == 0  # all duplicates; out itself is skipped
    with pytest.raises(UserError, match="missing.db"):
        merge_databases([tmp_path / "missing.db"], out)
    assert not (tmp_path / "missing.db").exists()
