"""Search over schedules (the auto-scheduler).

``tune(tasks, trials=..., database="tuning.db")`` measures candidate schedules of the tasks
within one trial budget and keeps every measurement in an SQLite file; ``task.apply_best(db)``
gives the best schedule found (or the default one of the search space). The pieces: tasks with
structural keys (``workload``, ``Task``), the tuning database (``Database``, ``TuningRecord``),
isolated measurement (``autotune.measure``), loop-IR features and the XGBoost cost model
(``autotune.features``, ``autotune.cost_model``), the search space generated from the
computation (``autotune.sketch``), the evolutionary search (``autotune.search``) and the task
scheduler with ``tune`` itself (``autotune.tuner``). ``tune(..., cluster="tcp://host:8786")``
measures on the workers of a Dask cluster instead (``autotune.measure_dask``, the
``distributed`` extra).

Example::

    task = autotune.Task(matmul, args=(256, 256, 256), target="llvm")
    autotune.tune([task], trials=200, database="tuning.db")
    s, args = task.apply_best("tuning.db")
"""
from .database import Database, TuningRecord
from .task import Task, best_task, lookup_workload, workload
from .tuner import TaskTuneSummary, TuneSummaries, tune

__all__ = ["Database", "Task", "TaskTuneSummary", "TuneSummaries", "TuningRecord",
           "best_task", "lookup_workload", "tune", "workload"]
