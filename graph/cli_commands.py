"""The bodies of the ``tensorlang`` subcommands (the parser and error handling are in
:mod:`graph.cli`; the ``db`` subcommands are in :mod:`graph.cli_db`). Each takes the parsed arguments and returns the exit status; a mistake of the
user's is raised as a ``UserError``, which ``graph.cli.main`` prints as one line.

Example::

    from graph.cli import build_parser
    from graph import cli_commands
    cli_commands.inspect_command(build_parser().parse_args(["inspect", "model.onnx"]))
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import sys
import time

import numpy as np

import graph
from autotune.database import Database
from tensorlang.errors import DTypeError, ShapeError, UserError

from .build import partition
from .ir import Call, post_order
from .passes import optimize
from .report import model_inputs, write_report
from .tune import extract_tasks

__all__ = ["compile_command", "tune_command", "run_command", "bench_command",
           "inspect_command", "report_command", "load_model", "parse_shapes"]


# -- shared helpers ------------------------------------------------------------------------------

def parse_shapes(items: list[str]) -> dict:
    """``["x=1,3,224,224", ...]`` -> ``{"x": (1, 3, 224, 224)}``.

    Example:
        >>> parse_shapes(["x=1,3,8,8"])
        {'x': (1, 3, 8, 8)}
    """
    shapes = {}
    for item in items:
        name, sep, dims = item.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(",") if d.strip())
        except ValueError:
            raise UserError(f"--shape {item!r}: expected NAME=D1,D2,... such as "
                            "input=1,3,224,224") from None
    return shapes


def load_model(path: str, shapes: dict | None = None):
    """The graph Module of the ONNX file at ``path``; a missing, unreadable or malformed file
    is a ``UserError`` naming it.

    Example:
        >>> mod = load_model("model.onnx", {"input": (1, 3, 224, 224)})   # doctest: +SKIP
    """
    if not os.path.exists(path):
        raise UserError(f"no such model file: {path!r}")
    if os.path.isdir(path):
        raise UserError(f"{path!r} is a folder, not an ONNX model file")
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError:
        raise UserError("reading ONNX models needs the onnx package: "
                        "pip install tensorlang[onnx]") from None
    try:
        model = onnx.load(path)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise UserError(f"{path!r} is not an ONNX model ({exc})") from None
    if not model.graph.node and not model.graph.output:
        raise UserError(f"{path!r} is not an ONNX model (it has no graph)")
    return graph.from_onnx(model, shape=shapes or None)


def _open_database(path: str, must_exist: bool = True) -> Database:
    """An open Database; a missing file is an error unless ``must_exist`` is False (then it is
    created). A file that is not a tuning database is an error naming it."""
    if path != ":memory:" and must_exist and not os.path.exists(path):
        raise UserError(f"no such tuning database: {path!r}")
    if os.path.isdir(path):
        raise UserError(f"{path!r} is a folder, not a tuning database")
    return Database(path)


def _check_database(path: str | None, must_exist: bool = True) -> str | None:
    """``path`` after checking that it is a readable tuning database (None passes)."""
    if path is not None:
        _open_database(path, must_exist).close()
    return path


def _show_progress(args) -> bool:
    forced = getattr(args, "progress", None)
    return forced if forced is not None else sys.stderr.isatty()


class _Bar:
    """``compile [########........] 12/40 kernels`` on one stderr line."""

    def __init__(self, label: str, unit: str, enabled: bool, width: int = 24):
        self.label, self.unit, self.enabled, self.width = label, unit, enabled, width
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        filled = self.width * done // total if total else self.width
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
                         f"{done}/{total} {self.unit}")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.shown = False


def _build(mod, args, database: str | None, target: str | None = None):
    bar = _Bar("compile", "kernels", _show_progress(args))
    try:
        return graph.build(mod, target=target or args.target, database=database, progress=bar)
    finally:
        bar.close()


def _type_text(t) -> str:
    if isinstance(t, tuple):
        return "(" + ", ".join(_type_text(x) for x in t) + ")"
    return f"{t.dtype}[{', '.join(str(d) for d in t.shape)}]"


def _ms(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.4f}"


def _table(header: list, rows: list) -> str:
    """A plain-text table, the first column left-aligned, the others right-aligned."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for r in cells:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    return "\n".join(lines)


# -- compile ---------------------------------------------------------------------------------------

def compile_command(args: argparse.Namespace) -> int:
    """``tensorlang compile MODEL -o model.so``."""
    mod = load_model(args.model, parse_shapes(args.shape))
    database = _check_database(args.database)
    _check_writable(args.output)
    if not hasattr(graph.Library, "export_library"):
        raise UserError("this tensorlang cannot export a compiled model yet (graph.export, "
                        "Library.export_library, is missing)")
    lib = _build(mod, args, database)
    lib.export_library(args.output, database=database)
    tuned = f", tuned with {database}" if database else ", untuned"
    header = os.path.splitext(args.output)[0] + ".h"
    print(f"wrote {args.output} (C header {header}): {lib.num_kernels} kernel calls per run "
          f"({lib.num_compiled} kernels){tuned}")
    print("  inputs:  " + ", ".join(f"{n} {_type_text(p.type)}" for n, p in
                                    zip(mod.input_names, mod.function.params)))
    print("  outputs: " + ", ".join(lib.output_names))
    return 0


# -- tune ------------------------------------------------------------------------------------------

def tune_command(args: argparse.Namespace) -> int:
    """``tensorlang tune MODEL --trials N --database DB [--report FILE.html]``."""
    mod = load_model(args.model, parse_shapes(args.shape))
    _check_database(args.database, must_exist=False)
    if args.report:
        _check_writable(args.report)
    with Database(args.database) as db:
        before = db.count()
    try:
        summaries = graph.tune(mod, target=args.target, trials=args.trials,
                               database=args.database, timeout=args.timeout, seed=args.seed,
                               progress=_show_progress(args),
                               cluster=getattr(args, "cluster", None))
    except KeyboardInterrupt:
        with Database(args.database) as db:
            done = db.count() - before
        print(f"\ntensorlang: interrupted: the {done} measurements made are kept in "
              f"{args.database}; run the same command again to continue", file=sys.stderr)
        return 130
    rows = []
    for s in summaries:
        rows.append([s.task.name, f"{s.task.weight:g}", s.previous_trials, s.trials, s.errors,
                     _ms(s.best_seconds),
                     f"{s.best_gflops:.2f}" if s.best_gflops is not None else "-"])
    print(_table(["task", "weight", "earlier", "trials", "failed", "best ms", "GFLOP/s"], rows))
    with Database(args.database) as db:
        total = db.count()
    print(f"{total - before} new records, {total} in {args.database}; run the same command "
          "again to continue tuning from them")
    if args.report:
        write_report(args.report, mod, args.database, args.target,
                     title=f"tuning report: {args.model}")
        print(f"wrote {args.report}")
    return 0


def _check_writable(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"cannot write {path!r}: no folder {folder!r}")


# -- report ----------------------------------------------------------------------------------------

def report_command(args: argparse.Namespace) -> int:
    """``tensorlang report MODEL --database DB -o report.html``."""
    mod = load_model(args.model, parse_shapes(args.shape))
    _check_database(args.database)
    _check_writable(args.output)
    write_report(args.output, mod, args.database, args.target,
                 profile=not args.no_profile, title=f"tuning report: {args.model}")
    print(f"wrote {args.output}")
    return 0


# -- run -------------------------------------------------------------------------------------------

def _read_inputs(items: list[str]) -> list[tuple]:
    """``[(name or None, array), ...]`` from ``NAME=FILE.npy`` items."""
    feeds = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = None, item
        if not os.path.exists(path):
            raise UserError(f"--input {item!r}: no such file {path!r}")
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise UserError(f"--input {item!r}: {path!r} is not a .npy array file ({exc})") \
                from None
        if not isinstance(array, np.ndarray):
            raise UserError(f"--input {item!r}: {path!r} holds several arrays (.npz); give "
                            "one .npy file per input")
        feeds.append((name, array))
    return feeds


def _bind_inputs(feeds: list[tuple], names: tuple, types: list | None) -> dict:
    """``{input name: array}``, checked against the model's inputs (and their types when
    known) before anything is compiled."""
    if any(n is None for n, _ in feeds):
        if len(names) != 1 or len(feeds) != 1:
            raise UserError(f"the model has inputs {list(names)}: give each as "
                            "--input NAME=FILE.npy")
        feeds = [(names[0], feeds[0][1])]
    given = {}
    for name, array in feeds:
        if name not in names:
            raise UserError(f"the model has no input named {name!r}; its inputs are "
                            f"{list(names)}")
        if name in given:
            raise UserError(f"input {name!r} is given twice")
        given[name] = array
    missing = [n for n in names if n not in given]
    if missing:
        raise UserError(f"input {missing[0]!r} is missing: give it as --input "
                        f"{missing[0]}=FILE.npy (the model's inputs are {list(names)})")
    for name, t in zip(names, types or []):
        array = given[name]
        if array.dtype != np.dtype(t.dtype):
            raise DTypeError(f"input {name!r} must be {t.dtype}, got {array.dtype} (from the "
                             ".npy file)")
        if tuple(array.shape) != tuple(t.shape):
            raise ShapeError(f"input {name!r} must have shape {tuple(t.shape)}, got "
                             f"{tuple(array.shape)}")
    return given


def _output_file(folder: str, name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "output"
    return os.path.join(folder, safe + ".npy")


def _summary(name: str, value: np.ndarray) -> str:
    flat = value.reshape(-1)
    head = "[" + ", ".join(f"{v:.6g}" if isinstance(v, (float, np.floating)) else str(v)
                           for v in flat[:6].tolist()) + "]"
    more = f" ... ({flat.size} values)" if flat.size > 6 else ""
    stats = ""
    if flat.size and np.issubdtype(value.dtype, np.number):
        stats = (f"  min {flat.min():.6g}, max {flat.max():.6g}, "
                 f"mean {flat.astype(np.float64).mean():.6g}")
    return f"{name}: {value.dtype}{list(value.shape)} {head}{more}{stats}"


def _is_shared_library(path: str) -> bool:
    """A ``.so`` name, or an ELF file whatever its name (a model from ``compile``)."""
    if path.endswith(".so"):
        if not os.path.exists(path):
            raise UserError(f"no such compiled model: {path!r}")
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def run_command(args: argparse.Namespace) -> int:
    """``tensorlang run MODEL_OR_SO --input NAME=FILE.npy ... [--output DIR]``."""
    if args.output and os.path.exists(args.output) and not os.path.isdir(args.output):
        raise UserError(f"--output {args.output!r} is a file, not a folder")
    if _is_shared_library(args.model):
        if not hasattr(graph, "load_library"):
            raise UserError("this tensorlang cannot load a compiled model yet "
                            "(graph.load_library is missing)")
        lib = graph.load_library(args.model)
        given = _bind_inputs(_read_inputs(args.input), tuple(lib.input_names), None)
    else:
        mod = load_model(args.model, parse_shapes(args.shape))
        given = _bind_inputs(_read_inputs(args.input), tuple(mod.input_names),
                             [p.type for p in mod.function.params])
        lib = _build(mod, args, _check_database(args.database))
    outputs = lib.run(**given)
    if args.output:
        os.makedirs(args.output, exist_ok=True)
        for name, value in zip(lib.output_names, outputs):
            path = _output_file(args.output, name)
            np.save(path, np.asarray(value))
            print(f"wrote {path}: {np.asarray(value).dtype}{list(np.shape(value))}")
    else:
        for name, value in zip(lib.output_names, outputs):
            print(_summary(name, np.asarray(value)))
    return 0


# -- bench -----------------------------------------------------------------------------------------

def _median_seconds(call, number: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(number):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _with_threads(target: str, n: int) -> str:
    if target.split()[:1] != ["llvm"] or "-num-threads=" in target:
        return target
    return f"{target} -num-threads={n}"


def _ort_session(path: str, threads: int):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _tuned_tasks(mod, target: str, database: str | None) -> str:
    """``"k/n"``: how many of the model's tasks have a record for ``target`` (records are kept
    per thread count: those tuned with 2 threads do not apply to a 1-thread build)."""
    tasks = extract_tasks(mod, target)
    if database is None:
        return f"0/{len(tasks)}"
    with Database(database) as db:
        tuned = sum(bool(db.best(t.key, t.target_key)) for t in tasks)
    return f"{tuned}/{len(tasks)}"


def bench_command(args: argparse.Namespace) -> int:
    """``tensorlang bench MODEL [--threads 1,2] [--number N] [--database DB]``."""
    import llvmlite.binding as llvm
    from tensorlang.runtime import set_num_threads
    mod = load_model(args.model, parse_shapes(args.shape))
    database = _check_database(args.database)
    threads = args.threads or sorted({1, os.cpu_count() or 1})
    have_ort = importlib.util.find_spec("onnxruntime") is not None
    feeds = model_inputs(mod, seed=0)
    cpu = llvm.get_host_cpu_name()
    print(f"{args.model} on {cpu} ({os.cpu_count()} CPUs), target {args.target}, "
          f"{'tuned with ' + database if database else 'untuned'}; median of {args.number} "
          "runs after 3 warm-up runs, the same random inputs for both")
    rows, mismatch = [], []
    for n in threads:
        set_num_threads(n)
        os.environ["TENSORLANG_NUM_THREADS"] = str(n)
        target = _with_threads(args.target, n)
        lib = _build(mod, args, database, target=target)
        ours = _median_seconds(lambda: lib.run(**feeds), args.number)
        row = [n, _tuned_tasks(mod, target, database), f"{ours * 1e3:.4f}"]
        if have_ort:
            session = _ort_session(args.model, n)
            names = [i.name for i in session.get_inputs()]
            ort_feeds = {k: feeds[k] for k in names if k in feeds}
            theirs = _median_seconds(lambda: session.run(None, ort_feeds), args.number)
            got, want = lib.run(**feeds), session.run(None, ort_feeds)
            same = all(np.allclose(g, w, rtol=1e-3, atol=1e-4) for g, w in zip(got, want))
            if not same:
                mismatch.append(n)
            row += [f"{theirs * 1e3:.4f}", f"{theirs / ours:.2f}x", "yes" if same else "NO"]
        rows.append(row)
    header = ["threads", "tuned tasks", "tensorlang ms"]
    if have_ort:
        header += ["onnxruntime ms", "speedup vs ORT", "same outputs"]
    print(_table(header, rows))
    if have_ort:
        print("speedup vs ORT = ORT's median / tensorlang's median (above 1: tensorlang is "
              "faster)")
    else:
        print("onnxruntime is not installed (pip install tensorlang[onnx]): only tensorlang "
              "was timed")
    if mismatch:
        print(f"warning: outputs differ from ONNX Runtime's (rtol 1e-3) with {mismatch} "
              "threads", file=sys.stderr)
    return 0


# -- inspect ---------------------------------------------------------------------------------------

def inspect_command(args: argparse.Namespace) -> int:
    """``tensorlang inspect MODEL [--database DB] [--no-build]``."""
    mod = load_model(args.model, parse_shapes(args.shape))
    database = _check_database(args.database)
    print(f"model {args.model}")
    for name, p in zip(mod.input_names, mod.function.params):
        print(f"  input  {name}: {_type_text(p.type)}")
    for name, o in zip(mod.output_names, mod.function.outputs):
        print(f"  output {name}: {_type_text(o.type)}")

    counts: dict[str, int] = {}
    for node in post_order(mod.function.outputs):
        if isinstance(node, Call):
            counts[node.op] = counts.get(node.op, 0) + 1
    print(f"\noperators ({sum(counts.values())} calls)")
    print(_indent(_table(["op", "count"], sorted(counts.items(), key=lambda kv: (-kv[1],
                                                                                 kv[0])))))

    groups = partition(optimize(mod))
    print(f"\nfused groups ({len(groups)}, after graph.passes.optimize)")
    print(_indent(_table(["group", "ops", "output"],
                         [[g.name, " -> ".join(c.op for c in g.calls), _type_text(g.output.type)]
                          for g in groups])))

    tasks = extract_tasks(mod, args.target)
    print(f"\ntuning tasks ({len(tasks)}; groups with a reduction, heaviest first)")
    if tasks:
        rows = []
        db = Database(database) if database else None
        try:
            for t in tasks:
                flops = t.flop_count()
                row = [t.name, f"{t.weight:g}", f"{flops:,}" if flops else "-", t.key[:12]]
                if db is not None:
                    records = db.records(t.key, t.target_key)
                    best = db.best(t.key, t.target_key)
                    row += [len(records), _ms(best[0].mean_cost) if best else "-"]
                rows.append(row)
        finally:
            if db is not None:
                db.close()
        header = ["task", "weight", "operations", "key"]
        if db is not None:
            header += ["trials", "best ms"]
        print(_indent(_table(header, rows)))

    if args.no_build:
        return 0
    lib = _build(mod, args, database)
    saved = 1 - lib.planned_bytes / lib.naive_bytes if lib.naive_bytes else 0.0
    print(f"\nmemory plan: {_bytes(lib.planned_bytes)} planned for intermediates "
          f"(naive: {_bytes(lib.naive_bytes)}, {saved:.0%} saved by reusing buffers)")
    print(f"kernels: {lib.num_kernels} calls per run, {lib.num_compiled} distinct kernels")
    return 0


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _bytes(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit} ({n:,} bytes)"
    return f"{n} bytes"
