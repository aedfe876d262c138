"""Workloads the search and tune tests import by module path (also from worker processes)."""
import tensorlang as tl
from autotune.task import workload
from tensorlang.ir.stmt import Evaluate

# the library's workloads, under their importable names (worker processes import them)
from autotune.workloads import matmul  # noqa: F401


@workload
def never_builds(n):
    """Lowers, but every build fails: it calls a function no library defines."""
    A = tl.placeholder((n,), name="A")
    E = tl.extern((n,), [A], lambda ins, outs: Evaluate(
        tl.call_extern("void", "tensorlang_test_no_such_function")), name="E")
    return [A, E]
