"""ONNX backend conformance: run onnx's node test cases through our backend, count per op.

Each case (``onnx.backend.test.case.node.collect_testcases()``: a one-node model, or its
function expansion, with input / expected output data and tolerances) is run in a worker
process, so a case that crashes the process or runs past ``timeout`` is a failure and the run
goes on. ``python -m graph.frontend.conformance`` prints passes per op type and the total.

Example::

    from graph.frontend.conformance import run_conformance
    report = run_conformance(ops={"Relu", "Conv"}, jobs=2)
    report.passed, report.total, report.per_op["Conv"]
"""
from __future__ import annotations

import multiprocessing as mp
import re
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import wait

import numpy as np

# Cases of the core operators that are expected to fail, each with the reason (the conformance
# test requires every other core case to pass). Exact names, then name patterns.
SKIP = {
    "test_equal_string": "string tensors are not supported",
    "test_equal_string_broadcast": "string tensors are not supported",
    "test_identity_opt": "optional values are not supported (tensors only)",
    "test_identity_sequence": "sequence values are not supported (tensors only)",
    "test_training_dropout": "training-mode Dropout (random mask) is not supported",
    "test_training_dropout_default": "training-mode Dropout (random mask) is not supported",
    "test_training_dropout_default_mask": "training-mode Dropout (random mask) is not supported",
    "test_training_dropout_mask": "training-mode Dropout (random mask) is not supported",
    "test_resize_tf_crop_and_resize": "Resize tf_crop_and_resize is not supported",
    "test_resize_tf_crop_and_resize_axes_2_3": "Resize tf_crop_and_resize is not supported",
    "test_resize_tf_crop_and_resize_axes_3_2": "Resize tf_crop_and_resize is not supported",
    "test_resize_tf_crop_and_resize_extrapolation_value":
        "Resize tf_crop_and_resize is not supported",
    "test_resize_downsample_scales_cubic_antialias": "Resize antialias=1 is not supported",
    "test_resize_downsample_scales_linear_antialias": "Resize antialias=1 is not supported",
    "test_resize_downsample_sizes_cubic_antialias": "Resize antialias=1 is not supported",
    "test_resize_downsample_sizes_linear_antialias": "Resize antialias=1 is not supported",
}
SKIP_PATTERNS: tuple = ()  # (regular expression, reason) pairs, for families of cases


def skip_reason(name: str) -> str | None:
    """Why case ``name`` is expected to fail, or None."""
    if name in SKIP:
        return SKIP[name]
    for pattern, reason in SKIP_PATTERNS:
        if re.search(pattern, name):
            return reason
    return None


@dataclass
class CaseResult:
    name: str
    op: str
    passed: bool
    error: str = ""
    seconds: float = 0.0


@dataclass
class Report:
    """Per-case results; ``per_op[op] = (passed, total)``."""
    results: list = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def per_op(self) -> dict:
        out: dict = {}
        for r in self.results:
            p, t = out.get(r.op, (0, 0))
            out[r.op] = (p + r.passed, t + 1)
        return dict(sorted(out.items()))

    def failures(self) -> list:
        return [r for r in self.results if not r.passed]

    def table(self) -> str:
        lines = [f"{'op type':<28}{'passed':>8}{'cases':>8}"]
        for op, (p, t) in self.per_op.items():
            lines.append(f"{op:<28}{p:>8}{t:>8}")
        pct = 100.0 * self.passed / max(1, self.total)
        lines.append(f"{'TOTAL':<28}{self.passed:>8}{self.total:>8}  ({pct:.1f}%)")
        return "\n".join(lines)


# -- cases --------------------------------------------------------------------------------------

def collect_cases() -> list:
    """onnx's node test cases (names, models, data, tolerances)."""
    import warnings
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return collect_testcases()


def case_op_types(cases) -> dict:
    """``{case name: op type}``: the op of a one-node model; an expanded (function body) case
    counts for the op of its unexpanded twin; otherwise the op whose name the case name starts
    with (the longest such)."""
    from onnx import defs
    single = {c.name: c.model.graph.node[0].op_type for c in cases
              if len(c.model.graph.node) == 1}
    squash = {s.name.lower(): s.name for s in defs.get_all_schemas()}
    out = {}
    for c in cases:
        if c.name in single:
            out[c.name] = single[c.name]
            continue
        base = re.sub(r"_expanded(_ver\d+)?$", "", c.name)
        if base in single:
            out[c.name] = single[base]
            continue
        flat = c.name[len("test_"):].replace("_", "").lower()
        best = max((k for k in squash if flat.startswith(k)), key=len, default=None)
        out[c.name] = squash[best] if best else c.model.graph.node[0].op_type
    return out


def _check(name, outputs, expected, rtol, atol) -> None:
    if len(outputs) != len(expected):
        raise AssertionError(f"{len(outputs)} outputs, expected {len(expected)}")
    for k, (got, want) in enumerate(zip(outputs, expected)):
        want = np.asarray(want)
        got = np.asarray(got)
        if got.dtype != want.dtype:
            raise AssertionError(f"output {k}: dtype {got.dtype}, expected {want.dtype}")
        if got.shape != want.shape:
            raise AssertionError(f"output {k}: shape {got.shape}, expected {want.shape}")
        if want.dtype.kind in "fc":
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol,
                                       err_msg=f"output {k}")
        elif want.dtype.kind == "V" and _is_ml_float(want.dtype):
            # as onnx's own runner: ml_dtypes floats compared as float32 (NaN equal to NaN),
            # bfloat16 within two of its ulps
            tol = max(rtol, 2.0 ** -6) if want.dtype.name == "bfloat16" else rtol
            np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32),
                                       rtol=tol, atol=atol, err_msg=f"output {k}")
        else:
            np.testing.assert_array_equal(got, want, err_msg=f"output {k}")


def _is_ml_float(dtype) -> bool:
    try:
        import ml_dtypes
        ml_dtypes.finfo(dtype)
        return True
    except (ImportError, ValueError, TypeError):
        return False


def _arrays(values) -> list:
    """Test data as NumPy arrays (the cases hold arrays, NumPy scalars and TensorProtos);
    sequences, optionals and maps are refused."""
    from onnx import TensorProto, numpy_helper
    out = []
    for x in values:
        if isinstance(x, TensorProto):
            x = numpy_helper.to_array(x)
        elif isinstance(x, (np.generic, int, float, bool)):
            x = np.asarray(x)
        if not isinstance(x, np.ndarray) or x.dtype == object:
            raise AssertionError(f"non-tensor value ({type(x).__name__}) in the test data")
        out.append(x)
    return out


def run_case(model_bytes: bytes, data_sets, rtol: float, atol: float, name: str = "") -> None:
    """Run one case through the backend; raises on any mismatch or error."""
    import onnx
    from .onnx_backend import prepare
    model = onnx.load_from_string(model_bytes)
    rep = prepare(model)
    for inputs, expected in data_sets:
        inputs, expected = _arrays(inputs), _arrays(expected)
        with np.errstate(all="ignore"):
            outputs = rep.run(list(inputs))
        _check(name, outputs, expected, rtol, atol)


def _worker(conn) -> None:
    import os
    import warnings
    # the cases run in parallel already: compile each case's kernels here, in this process
    os.environ["TENSORLANG_COMPILE_WORKERS"] = "1"
    warnings.simplefilter("ignore")
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        name, model_bytes, data_sets, rtol, atol = job
        try:
            run_case(model_bytes, data_sets, rtol, atol, name)
            conn.send((True, ""))
        except BaseException as err:  # noqa: BLE001 - every failure is a result
            msg = f"{type(err).__name__}: {err}"
            if not isinstance(err, AssertionError):
                tb = traceback.extract_tb(err.__traceback__)
                if tb:
                    msg += f"  [{tb[-1].filename.split('/')[-1]}:{tb[-1].lineno}]"
            conn.send((False, msg[:2000]))


class _Worker:
    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self.job = None
        self.started = 0.0

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        self.proc.join(2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def run_conformance(ops=None, names=None, jobs: int = 2, timeout: float = 60.0,
                    cases=None, progress=None, expanded: bool = True) -> Report:
    """Run the node cases (those of op types ``ops`` / case ``names``, default all) in ``jobs``
    worker processes, each case at most ``timeout`` seconds; ``expanded=False`` leaves out the
    function-expansion twins (``*_expanded``). Returns a :class:`Report`."""
    cases = collect_cases() if cases is None else cases
    op_of = case_op_types(cases)
    todo = [c for c in cases if (ops is None or op_of[c.name] in ops) and
            (names is None or c.name in names) and (expanded or "_expanded" not in c.name)]
    report = Report()
    ctx = mp.get_context("spawn")
    workers = [_Worker(ctx) for _ in range(max(1, min(jobs, len(todo))))]
    queue = list(reversed(todo))

    def record(case, ok, msg, seconds):
        report.results.append(CaseResult(case.name, op_of[case.name], ok, msg, seconds))
        if progress:
            progress(report.results[-1])

    try:
        while queue or any(w.job for w in workers):
            for w in workers:
                if w.job is None and queue:
                    case = queue.pop()
                    w.job, w.started = case, time.monotonic()
                    try:
                        w.conn.send((case.name, case.model.SerializeToString(),
                                     case.data_sets, case.rtol, case.atol))
                    except Exception as err:  # noqa: BLE001 - unpicklable data
                        record(case, False, f"could not send the case: {err}", 0.0)
                        w.job = None
            busy = [w for w in workers if w.job is not None]
            if not busy:
                continue
            ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=0.5)
            now = time.monotonic()
            for i, w in enumerate(workers):
                if w.job is None:
                    continue
                result = None
                if w.conn in ready:
                    try:
                        result = w.conn.recv()
                    except (EOFError, OSError):
                        result = (False, f"the worker died (exit code {w.proc.exitcode})")
                elif w.proc.sentinel in ready or not w.proc.is_alive():
                    w.proc.join(1)
                    result = (False, f"the worker died (exit code {w.proc.exitcode})")
                elif now - w.started > timeout:
                    result = (False, f"timed out after {timeout:.0f} s")
                if result is None:
                    continue
                record(w.job, result[0], result[1], now - w.started)
                w.job = None
                if not result[0] and ("died" in result[1] or "timed out" in result[1]):
                    w.proc.kill()
                    w.proc.join()
                    workers[i] = _Worker(ctx)
    finally:
        for w in workers:
            if w.job is not None or not w.proc.is_alive():
                w.proc.kill()
                w.proc.join()
            else:
                w.stop()
    report.results.sort(key=lambda r: r.name)
    return report


def main(argv=None) -> int:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", nargs="*", help="only these ONNX op types")
    parser.add_argument("--cases", nargs="*", help="only these case names")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--failures", action="store_true", help="list failing cases and why")
    parser.add_argument("--slowest", type=int, default=0, help="list the N slowest cases")
    args = parser.parse_args(argv)
    report = run_conformance(ops=set(args.ops) if args.ops else None,
                             names=set(args.cases) if args.cases else None,
                             jobs=args.jobs, timeout=args.timeout)
    print(report.table())
    if args.failures:
        for r in report.failures():
            print(f"FAIL {r.name} [{r.op}] {r.error.splitlines()[0] if r.error else ''}"[:300])
    for r in sorted(report.results, key=lambda r: -r.seconds)[:args.slowest]:
        print(f"SLOW {r.seconds:6.2f}s {r.name} [{r.op}] {'pass' if r.passed else 'FAIL'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

__all__ = ["SKIP", "SKIP_PATTERNS", "skip_reason", "CaseResult", "Report", "collect_cases", "case_op_types", "run_case",
           "run_conformance", "main"]
