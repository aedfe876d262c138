"""Search over schedules (the auto-scheduler).

So far: tasks with structural keys (``workload``, ``Task``) and the SQLite tuning database
(``Database``, ``TuningRecord``). The search space, cost model, measurement and ``tune`` come
next (issue #4).
"""
from .database import Database, TuningRecord
from .task import Task, lookup_workload, workload

__all__ = ["Database", "Task", "TuningRecord", "lookup_workload", "workload"]
