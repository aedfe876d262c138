"""Search over schedules (the auto-scheduler).

Built so far (issue #4, in progress): tasks with structural keys (``workload``, ``Task``), the
SQLite tuning database (``Database``, ``TuningRecord``), isolated measurement
(``autotune.measure``), loop-IR features and the XGBoost cost model (``autotune.features``,
``autotune.cost_model``) and the search space generated from the computation
(``autotune.sketch``). The evolutionary search, the task scheduler, ``tune`` and
``Task.apply_best`` come next.
"""
from .database import Database, TuningRecord
from .task import Task, lookup_workload, workload

__all__ = ["Database", "Task", "TuningRecord", "lookup_workload", "workload"]
