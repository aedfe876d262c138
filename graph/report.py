"""The tuning report: one self-contained HTML page about a tuned model.

For each tuning task of the model (``graph.extract_tasks``) the page shows its tuning curve (the
best GFLOP/s, or best time, after each trial, from the database records in the order they were
measured) and its best schedule as readable loop IR; then the time each fused group takes in the
untuned build and in the tuned one (``Library.profile`` on the same random inputs), as a table
and a bar chart. Pictures are PNGs drawn by matplotlib (the ``report`` extra, Agg backend)
embedded as base64, so the page needs no other file; without matplotlib the page keeps its
tables and loop IR and says what is missing.

Example::

    mod = graph.from_onnx("model.onnx")
    graph.tune(mod, trials=200, database="tuning.db")
    write_report("report.html", mod, "tuning.db")
"""
from __future__ import annotations

import base64
import html
import io
import math
import os
import platform
import time

import numpy as np

from autotune.database import Database, TuningRecord
from tensorlang.errors import UserError

from .ir import Module
from .tune import extract_tasks

__all__ = ["write_report", "model_inputs", "tuning_curve"]

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ccc; }
h3 { margin-bottom: 0.3em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; } td.name, th.name { text-align: left; font-family: monospace; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: 0.6em; font-size: 0.78em;
      max-height: 28em; overflow: auto; }
.meta { color: #555; font-size: 0.9em; } .note { color: #8a5a00; }
img { max-width: 100%; } .curve { max-width: 560px; }
"""


def model_inputs(mod: Module, seed: int = 0) -> dict:
    """``{input name: array}``: random inputs of the model's shapes and dtypes (normal floats,
    small non-negative integers, random booleans), the same for the same seed.

    Example:
        >>> feeds = model_inputs(graph.from_onnx("model.onnx"))   # doctest: +SKIP
        >>> lib.run(**feeds)                                        # doctest: +SKIP
    """
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, param in zip(mod.input_names, mod.function.params):
        shape, dtype = tuple(param.type.shape), np.dtype(param.type.dtype)
        if dtype == np.bool_:
            feeds[name] = rng.integers(0, 2, shape).astype(bool)
        elif np.issubdtype(dtype, np.integer):
            feeds[name] = rng.integers(0, 2, shape).astype(dtype)  # safe as indices too
        else:
            feeds[name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def tuning_curve(records: list[TuningRecord]) -> list[tuple]:
    """``[(trial, seconds or None, best seconds so far or None), ...]`` for records in the
    order they were measured (``Database.records`` gives that order); failed trials have
    ``None`` seconds.

    Example:
        >>> tuning_curve(db.records(task.key, task.target_key))   # doctest: +SKIP
        [(1, 0.0021, 0.0021), (2, None, 0.0021), (3, 0.0012, 0.0012)]
    """
    best, points = math.inf, []
    for trial, record in enumerate(records, 1):
        seconds = record.mean_cost if record.ok else None
        if seconds is not None:
            best = min(best, seconds)
        points.append((trial, seconds, best if math.isfinite(best) else None))
    return points


def write_report(path: str | os.PathLike, mod: Module, database, target: str = "llvm", *,
                 inputs: dict | None = None, number: int = 10, title: str | None = None,
                 profile: bool = True) -> str:
    """Write the tuning report of ``mod`` to ``path`` (an HTML file); returns the path.

    Args:
        path: the HTML file to write.
        mod: the model (``graph.from_onnx(...)``).
        database: the tuning database (a path or an open ``autotune.Database``).
        target: the target the model was tuned for; records of other targets are not shown.
        inputs: ``{input name: array}`` to profile with (default: :func:`model_inputs`).
        number: model runs per profile (each build is profiled three times, alternating,
            and each group's fastest profile kept).
        title: the page title (default: "tensorlang tuning report").
        profile: build the model untuned and tuned and compare the time of each fused group.

    Raises:
        UserError: ``database`` is missing or not a tuning database.

    Example:
        >>> write_report("report.html", mod, "tuning.db")   # doctest: +SKIP
        'report.html'
    """
    if not isinstance(mod, Module):
        raise UserError(f"write_report takes a graph Module, got {type(mod).__name__}")
    if isinstance(database, (str, os.PathLike)) and not os.path.exists(database):
        raise UserError(f"write_report: no such tuning database {os.fspath(database)!r}")
    db = database if isinstance(database, Database) else Database(database)
    try:
        tasks = extract_tasks(mod, target)
        tuned_keys = {t.key for t in tasks if db.best(t.key, t.target_key)}
        sections = [_task_section(task, db) for task in tasks]
        summary = _task_table(tasks, db)
        db_path = db.path
    finally:
        if db is not database:
            db.close()
    parts = [f"<h1>{html.escape(title or 'tensorlang tuning report')}</h1>",
             _meta(tasks, target, db_path), "<h2>Tasks</h2>", summary]
    if not _plt():
        parts.append('<p class="note">matplotlib is not installed (pip install '
                     'tensorlang[report]): the page has no pictures.</p>')
    if profile:
        parts += ["<h2>Time per fused group, before and after tuning</h2>",
                  _profile_section(mod, db_path, target, inputs, number, tasks, tuned_keys)]
    parts += ["<h2>Tuning curves and best schedules</h2>", *sections]
    page = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title or 'tensorlang tuning report')}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return os.fspath(path)


# -- sections ----------------------------------------------------------------------------------

def _meta(tasks, target: str, db_path: str) -> str:
    try:
        import llvmlite.binding as llvm
        cpu = llvm.get_host_cpu_name()
    except Exception:  # noqa: BLE001 — the page is still useful without the CPU name
        cpu = platform.processor() or "unknown"
    threads = tasks[0].target_key.rsplit("-num-threads=", 1)[-1] if tasks and \
        "-num-threads=" in tasks[0].target_key else "?"
    rows = [("database", db_path), ("target", target), ("host CPU", cpu),
            ("threads", threads), ("written", time.strftime("%Y-%m-%d %H:%M:%S"))]
    return '<p class="meta">' + "<br>".join(
        f"<b>{k}</b>: {html.escape(str(v))}" for k, v in rows) + "</p>"


def _task_table(tasks, db: Database) -> str:
    rows = []
    for task in tasks:
        records = db.records(task.key, task.target_key)
        ok = [r for r in records if r.ok]
        best = min((r.mean_cost for r in ok), default=None)
        flops = task.flop_count()
        gflops = f"{flops / best / 1e9:.2f}" if best and flops else "-"
        rows.append(f'<tr><td class="name"><a href="#task-{task.key[:12]}">'
                    f"{html.escape(task.name)}</a></td><td>{task.weight:g}</td>"
                    f"<td>{_flops(flops)}</td><td>{len(records)}</td>"
                    f"<td>{len(records) - len(ok)}</td><td>{_ms(best)}</td><td>{gflops}</td></tr>")
    head = ('<tr><th class="name">task</th><th>weight</th><th>operations</th><th>trials</th>'
            "<th>failed</th><th>best ms</th><th>best GFLOP/s</th></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _task_section(task, db: Database) -> str:
    import tensorlang as tl
    records = db.records(task.key, task.target_key)
    flops = task.flop_count()
    points = tuning_curve(records)
    picture = _curve_png(task.name, points, flops) if points else None
    if picture:
        left = (f'<img class="curve" alt="tuning curve of {html.escape(task.name)}" '
                f'src="{picture}">')
    elif not records:
        left = '<p class="note">no records of this task on this target yet</p>'
    else:
        left = f"<p>{len(records)} trials (no pictures without matplotlib)</p>"
    schedule, args = task.apply_best(db)
    kind = "best measured schedule" if any(r.ok for r in records) else "default schedule"
    try:
        loops = str(tl.lower(schedule, args, name=task.name))
    except Exception as exc:  # noqa: BLE001 — a record that no longer lowers: say so
        loops = f"(the schedule does not lower: {exc})"
    return (f'<h3 id="task-{task.key[:12]}">{html.escape(task.name)}</h3>'
            f'<p class="meta">key {task.key[:16]}, weight {task.weight:g}, '
            f"{_flops(flops)} operations, {len(records)} trials</p>"
            f"{left}<p><b>{kind}</b></p><pre>{html.escape(loops)}</pre>")


def _profile_section(mod: Module, db_path: str, target: str, inputs, number: int,
                     tasks: list, tuned_keys: set) -> str:
    from .build import build
    feeds = inputs if inputs is not None else model_inputs(mod)
    untuned = build(mod, target=target, database=None)
    tuned = build(mod, target=target, database=db_path)
    before: dict = {}
    after: dict = {}
    for _ in range(_ROUNDS):  # alternating rounds, fastest of each: less noise from the machine
        for lib, times in ((untuned, before), (tuned, after)):
            for group, seconds in lib.profile(**feeds, number=number):
                times[group] = min(times.get(group, math.inf), seconds)
    schedules = _group_schedules(mod, target, tasks, tuned_keys)
    groups = sorted(before, key=lambda g: -before[g])
    total_before, total_after = sum(before.values()), sum(after.values())
    rows = []
    for g in groups:
        b, a = before[g], after.get(g, 0.0)
        speedup = f"{b / a:.2f}x" if a > 0 else "-"
        rows.append(f'<tr><td class="name">{html.escape(g)}</td>'
                    f'<td class="name">{schedules.get(g, "-")}</td><td>{_ms(b)}</td>'
                    f"<td>{_share(b, total_before)}</td><td>{_ms(a)}</td>"
                    f"<td>{_share(a, total_after)}</td><td>{speedup}</td></tr>")
    total_speedup = f"{total_before / total_after:.2f}x" if total_after > 0 else "-"
    rows.append(f'<tr><th class="name">total</th><th></th><th>{_ms(total_before)}</th>'
                f"<th>100%</th><th>{_ms(total_after)}</th><th>100%</th>"
                f"<th>{total_speedup}</th></tr>")
    head = ('<tr><th class="name">fused group</th><th class="name">tuned build uses</th>'
            "<th>untuned ms</th><th>share</th><th>tuned ms</th><th>share</th>"
            "<th>speedup</th></tr>")
    table = f"<table>{head}{''.join(rows)}</table>"
    picture = _profile_png(groups, before, after)
    image = f'<img alt="time per fused group" src="{picture}">' if picture else ""
    note = (f'<p class="meta">per group: the fastest of {_ROUNDS} alternating profiles, each '
            f"the mean of {number} runs (Library.profile), the same random inputs for both "
            "builds. A group whose task has no record runs its default schedule in both builds: "
            "its difference is measurement noise.</p>")
    return table + note + image


_ROUNDS = 3


def _group_schedules(mod: Module, target: str, tasks: list, tuned_keys: set) -> dict:
    """``{group name: "tuned record" | "default schedule" | "not tuned (no reduction)"}``."""
    from .build import group_spec, native_conv_spec, partition
    from .gpu import is_cuda_target
    from .passes import optimize
    by_spec = {t.args[0]: t for t in tasks}
    kinds = {}
    for group in partition(optimize(mod)):  # the groups (and names) graph.build makes
        spec = group_spec(group, target)
        native = None if is_cuda_target(target) else native_conv_spec(spec)
        task = by_spec.get(native or spec)
        if task is None:
            kinds[group.name] = "not tuned (no reduction)"
        elif task.key in tuned_keys:
            kinds[group.name] = "tuned record"
        else:
            kinds[group.name] = "default schedule"
    return kinds


# -- pictures ----------------------------------------------------------------------------------

def _plt():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _png(fig) -> str:
    plt = _plt()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _curve_png(name: str, points, flops) -> str | None:
    plt = _plt()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    trials = [p[0] for p in points]
    if flops:  # GFLOP/s, higher is better
        each = [flops / p[1] / 1e9 if p[1] else None for p in points]
        best = [flops / p[2] / 1e9 if p[2] else None for p in points]
        ax.set_ylabel("GFLOP/s")
    else:      # milliseconds, lower is better
        each = [p[1] * 1e3 if p[1] else None for p in points]
        best = [p[2] * 1e3 if p[2] else None for p in points]
        ax.set_ylabel("ms")
    ok = [(t, v) for t, v in zip(trials, each) if v is not None]
    if ok:
        ax.scatter(*zip(*ok), s=10, color="#bbbbbb", label="trial")
    line = [(t, v) for t, v in zip(trials, best) if v is not None]
    if line:
        ax.step(*zip(*line), where="post", color="#1f77b4", label="best so far")
    failed = [t for t, v in zip(trials, each) if v is None]
    if failed:
        ax.plot(failed, [0] * len(failed), "x", color="#d62728", label="failed")
    ax.set_xlabel("trial")
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(name, fontsize=9)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _profile_png(groups, before: dict, after: dict, limit: int = 15) -> str | None:
    plt = _plt()
    if plt is None or not groups:
        return None
    shown = groups[:limit]
    labels = [g if len(g) <= 40 else g[:37] + "..." for g in shown]
    b = [before[g] * 1e3 for g in shown]
    a = [after.get(g, 0.0) * 1e3 for g in shown]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(shown) + 1.4))
    y = np.arange(len(shown))
    ax.barh(y - 0.2, b, height=0.4, label="untuned", color="#ff7f0e")
    ax.barh(y + 0.2, a, height=0.4, label="tuned", color="#1f77b4")
    ax.set_yticks(y, labels, fontsize=8, family="monospace")
    ax.invert_yaxis()
    ax.set_xlabel("ms per run")
    ax.legend(fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _ms(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.4f}"


def _share(part: float, total: float) -> str:
    return f"{100 * part / total:.1f}%" if total > 0 else "-"


def _flops(flops) -> str:
    if not flops:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if flops >= scale:
            return f"{flops / scale:.2f} {unit}"
    return str(flops)
