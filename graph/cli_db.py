"""The ``tensorlang db`` subcommands: list, export, import and merge tuning databases (the
parser is in :mod:`graph.cli`, the other subcommands in :mod:`graph.cli_commands`).

Example::

    $ tensorlang db list tuning.db
    $ tensorlang db merge machine_a.db machine_b.db -o all.db
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

from autotune.database import Database, merge_databases
from tensorlang.errors import UserError

from .cli_commands import _check_database, _check_writable, _ms, _open_database, _table

__all__ = ["db_list_command", "db_export_command", "db_import_command", "db_merge_command"]


def _short_target(target: str) -> str:
    """``llvm -mtriple=... -mcpu=znver3 -mattr=... -num-threads=2`` -> ``llvm znver3, 2
    threads``."""
    words = target.split()
    cpu = re.search(r"-mcpu=(\S+)", target)
    threads = re.search(r"-num-threads=(\d+)", target)
    arch = re.search(r"-arch=(\S+)", target)
    text = words[0] if words else target
    for match in (cpu, arch):
        if match:
            text += f" {match.group(1)}"
    if threads:
        text += f", {threads.group(1)} thread{'s' if threads.group(1) != '1' else ''}"
    return text



# -- db --------------------------------------------------------------------------------------------

def _task_labels(db: Database) -> dict:
    """``{task key: label}`` for the tasks the database's runs describe (best effort: a task
    whose workload no longer imports gets no label)."""
    from autotune.task import Task
    labels, seen = {}, set()
    for run in db.all_runs():
        for d in run.meta.get("tasks", []):
            ident = json.dumps(d, sort_keys=True)
            if ident in seen:
                continue
            seen.add(ident)
            try:
                task = Task.from_dict(d)
            except Exception:  # noqa: BLE001 — a workload gone or changed: no label
                continue
            labels[task.key] = _label(task)
    return labels


def _label(task) -> str:
    if task.workload_name.endswith("group_workload") and task.args:
        try:
            spec = json.loads(task.args[0])
            ops = "+".join(op for op, _, _ in spec["ops"])
            shape = "x".join(str(d) for d in spec["inputs"][0][0])
            return f"{ops} [{shape}]"
        except (ValueError, KeyError, IndexError, TypeError):
            pass
    return task.name


def db_list_command(args: argparse.Namespace) -> int:
    """``tensorlang db list DB``."""
    with _open_database(args.database) as db:
        summaries = db.tasks()
        labels = _task_labels(db)
        rows = []
        for s in summaries:
            records = db.records(s.task_key, s.target)
            failed = sum(not r.ok for r in records)
            best = db.best(s.task_key, s.target)
            rows.append([s.task_key[:12], labels.get(s.task_key, "?"), _short_target(s.target),
                         s.count, failed, _ms(best[0].mean_cost) if best else "-"])
        total = db.count()
    print(f"{args.database}: {total} records of {len(summaries)} tasks")
    if rows:
        print(_table(["task key", "computation", "target", "records", "failed", "best ms"],
                     rows))
    return 0


def db_export_command(args: argparse.Namespace) -> int:
    """``tensorlang db export DB [-o FILE.jsonl] [--task KEY]``."""
    with _open_database(args.database) as db:
        key = None
        if args.task:
            keys = sorted({s.task_key for s in db.tasks() if s.task_key.startswith(args.task)})
            if len(keys) != 1:
                raise UserError(f"--task {args.task!r} matches {len(keys)} tasks of "
                                f"{args.database} (give more of the key; 'tensorlang db list' "
                                "shows them)")
            key = keys[0]
        if args.output == "-":
            count = db.export_jsonl(sys.stdout, task_key=key)
        else:
            _check_writable(args.output)
            count = db.export_jsonl(args.output, task_key=key)
    where = "standard output" if args.output == "-" else args.output
    print(f"exported {count} records to {where}", file=sys.stderr)
    return 0


def db_import_command(args: argparse.Namespace) -> int:
    """``tensorlang db import DB FILE.jsonl ...``."""
    for path in args.files:
        if not os.path.exists(path):
            raise UserError(f"no such records file: {path!r}")
    with _open_database(args.database, must_exist=False) as db:
        for path in args.files:
            before = db.count()
            added = db.import_jsonl(path)
            with open(path, encoding="utf-8") as f:
                lines = sum(1 for line in f if line.strip())
            print(f"{path}: {added} records added, {lines - added} duplicates skipped "
                  f"({before + added} in {args.database})")
    return 0


def db_merge_command(args: argparse.Namespace) -> int:
    """``tensorlang db merge A.db B.db ... -o OUT.db``."""
    for path in args.sources:
        _check_database(path)
    _check_database(args.output, must_exist=False)
    added = merge_databases(args.sources, args.output)
    with Database(args.output) as db:
        total = db.count()
    print(f"{args.output}: {added} records added from {len(args.sources)} "
          f"database{'s' if len(args.sources) != 1 else ''} "
          f"({total} in all, no duplicates)")
    return 0
