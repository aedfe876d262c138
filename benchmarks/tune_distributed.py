"""Measured trials per minute: one local process, one Dask worker, two Dask workers.

The same candidates (schedules of one matmul, drawn once by the evolutionary search with an
untrained model, so the three runs compile and time identical code) are measured in batches by

- ``local``: ``LocalBuilder(n_parallel=1)`` + ``LocalRunner`` in this process (what ``tune``
  uses without a cluster, pinned to one build process);
- ``1 worker`` / ``2 workers``: a ``LocalCluster`` of that many worker processes, one thread
  and one ``measure`` slot each, through ``DaskRunner`` (what ``tune(cluster=...)`` uses).

Every kernel runs on one thread (target ``llvm -num-threads=1``; ``TENSORLANG_NUM_THREADS``,
``OMP_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` are 1). Each back-end first measures a warm-up
batch (process start, imports, the reference outputs), which is not timed. The cluster overhead
per trial is (1-worker time - local time) / trials on the same candidates; "dispatch" is the
wall time beyond the build and run seconds the candidates report (a serial back-end's own cost,
less sensitive to a noisy machine). Last, one short
``tune`` on the two workers splits its wall time into measuring and the client's own work
(search, cost-model training, database writes) per batch, the numbers a model of larger
clusters needs.

Targets (issue 9): two workers at least 1.7x one worker; overhead under 50 ms per trial. Run it
on a quiet machine with at least two cores:

    python benchmarks/tune_distributed.py --trials 64
    python benchmarks/tune_distributed.py --trials 8 --batch 4 --size 32   # smoke run
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

for _name in ("TENSORLANG_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_name] = "1"  # before anything starts a thread pool; workers inherit it

import autotune  # noqa: E402
from autotune import workloads  # noqa: E402
from autotune.cost_model import XGBoostCostModel  # noqa: E402
from autotune.measure import LocalBuilder, LocalRunner, MeasureInput, measure  # noqa: E402
from autotune.search import EvolutionarySearch  # noqa: E402

TARGET = "llvm -num-threads=1"


def _candidates(task, count: int, seed: int) -> list[MeasureInput]:
    search = EvolutionarySearch(task, None, seed=seed)
    model = XGBoostCostModel(seed=seed)
    batch: list = []
    while len(batch) < count:
        more = search.next_batch(count - len(batch), model)
        if not more:
            break
        batch += more
    return [MeasureInput(task.to_dict(), c.schedule_json) for c in batch]


def _timed(measure_batch, warmup, inputs, batch: int, runner=None) -> tuple[float, int, float]:
    """Seconds to measure ``inputs`` in batches (after one untimed warm-up batch), how many
    succeeded, and the seconds the workers spent building and running them. With a
    ``runner`` that takes batches asynchronously, one batch is submitted before the previous
    one is collected, as ``tune`` does."""
    measure_batch(warmup)
    start = time.perf_counter()
    ok, work = 0, 0.0
    chunks = [inputs[i:i + batch] for i in range(0, len(inputs), batch)]
    if runner is None:
        results = [r for chunk in chunks for r in measure_batch(chunk)]
    else:
        results, flight = [], None
        for chunk in chunks + [None]:
            following = runner.submit(chunk) if chunk is not None else None
            if flight is not None:
                results += runner.collect(flight)
            flight = following
    for r in results:
        ok += r.ok
        work += r.build_seconds + r.run_seconds
    return time.perf_counter() - start, ok, work


def _local(warmup, inputs, args) -> tuple[float, int, float]:
    with LocalBuilder(n_parallel=1, timeout=60) as builder, \
            LocalRunner(timeout=args.timeout, repeat=args.repeat) as runner:
        return _timed(lambda xs: measure(xs, builder, runner), warmup, inputs, args.batch)


def _cluster(workers: int, warmup, inputs, args) -> tuple[float, int, float]:
    import distributed
    from autotune.measure_dask import DaskRunner
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  resources={"measure": 1}, dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client, \
            DaskRunner(client, timeout=args.timeout, repeat=args.repeat,
                       build_timeout=60) as runner:
        # the warm-up batch reaches every worker: each starts its build and runner processes
        return _timed(runner.measure, warmup, inputs, args.batch, runner)


def _client_side(task, args) -> tuple[float, float, int]:
    """A short ``tune`` on two workers: (wall seconds, of which waiting for the cluster,
    batches). ``tune`` searches batch k+1 while batch k measures, so the client's own work is
    the wall time it did not spend waiting in ``DaskRunner.collect``."""
    import distributed
    from autotune.measure_dask import DaskRunner
    spent = {"measure": 0.0, "batches": 0}
    real_collect = DaskRunner.collect

    def timed_collect(self, batch):
        start = time.perf_counter()
        try:
            return real_collect(self, batch)
        finally:
            spent["measure"] += time.perf_counter() - start
            spent["batches"] += 1

    DaskRunner.collect = timed_collect
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      resources={"measure": 1},
                                      dashboard_address=":0") as cluster, \
                distributed.Client(cluster) as client, tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            autotune.tune([task], trials=args.trials, database=os.path.join(tmp, "t.db"),
                          batch_size=args.batch, progress=False, remeasure=0, cluster=client,
                          timeout=args.timeout, repeat=args.repeat)
            wall = time.perf_counter() - start
    finally:
        DaskRunner.collect = real_collect
    return wall, spent["measure"], spent["batches"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=64, help="timed candidates per back-end")
    parser.add_argument("--batch", type=int, default=16, help="candidates per measure() call")
    parser.add_argument("--size", type=int, default=128, help="matmul M = N = K")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-tune", action="store_true", help="leave out the tune() split")
    args = parser.parse_args(argv)

    import llvmlite.binding as llvm
    n = args.size
    task = autotune.Task(workloads.matmul, args=(n, n, n), target=TARGET)
    everything = _candidates(task, args.trials + 2 * args.batch, args.seed)
    warmup, inputs = everything[:args.batch], everything[2 * args.batch:]
    print(f"CPU {llvm.get_host_cpu_name()}, {os.cpu_count()} logical CPUs; matmul {n}x{n}x{n}, "
          f"target '{TARGET}', 1 thread per kernel and per worker; {len(inputs)} candidates "
          f"in batches of {args.batch}, repeat={args.repeat}", flush=True)

    rows = {"local process": _local(warmup[:1], inputs, args)}
    print("  local process done", flush=True)
    rows["1 Dask worker"] = _cluster(1, warmup[:2], inputs, args)
    print("  1 worker done", flush=True)
    rows["2 Dask workers"] = _cluster(2, warmup[:4], inputs, args)
    # dispatch: wall time beyond the build + run seconds the candidates themselves report
    # (serial back-ends only: two workers overlap their work)
    print(f"{'back-end':<16} {'seconds':>8} {'trials/min':>11} {'ok':>5} "
          f"{'dispatch ms/trial':>18}")
    for name, (seconds, ok, work) in rows.items():
        dispatch = f"{(seconds - work) / len(inputs) * 1e3:18.1f}" if "2" not in name else ""
        print(f"{name:<16} {seconds:8.2f} {len(inputs) / seconds * 60:11.1f} {ok:5d} {dispatch}")
    local, one, two = (rows[k][0] for k in ("local process", "1 Dask worker", "2 Dask workers"))
    overhead = (one - local) / len(inputs)
    print(f"2 workers / 1 worker: {one / two:.2f}x (target >= 1.7x)")
    print(f"cluster overhead per trial (1 worker - local): {overhead * 1e3:.1f} ms "
          "(target < 50 ms)")
    if not args.skip_tune:
        wall, measuring, batches = _client_side(task, args)
        client = (wall - measuring) / max(batches, 1)
        print(f"tune() on 2 workers, {args.trials} trials: {wall:.1f} s, {measuring:.1f} s "
              f"waiting for the cluster; client-side (search, model, database, overlapping "
              f"the measurements) {client:.2f} s per batch of {args.batch}")


if __name__ == "__main__":
    sys.exit(main())
