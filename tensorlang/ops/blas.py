"""Matrix products computed by the vendor BLAS: ``tl.extern`` stages that call sgemm / dgemm.

Each operator here is one extern stage whose body is a single call
``tl_blas_sgemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)`` (or
``tl_blas_dgemm`` for float64) on row-major buffers; the CPU backend provides those C functions
(``codegen.llvm.blas``, over the BLAS that scipy bundles), so the generated kernel calls the BLAS
with no Python in the loop. Shapes may be symbolic: the extents passed are the buffers' own.

The BLAS runs its own threads (``OPENBLAS_NUM_THREADS``); do not put these stages inside a
parallel loop — the CPU backend refuses it. Elementwise stages that read the result (the bias of
:func:`dense`) are ordinary compute stages and schedule as usual.

Example::

    import tensorlang as tl
    from tensorlang.ops import blas
    m = tl.var("m")
    X = tl.placeholder((m, 256), name="X")
    W = tl.placeholder((128, 256), name="W")
    b = tl.placeholder((128,), name="b")
    Y = blas.dense(X, W, b)          # X @ W.T + b
    f = tl.build(tl.create_schedule(Y), [X, W, b, Y])
"""
from __future__ import annotations

from ..errors import DTypeError, ShapeError
from ..expr import cast, const
from ..ir.stmt import Evaluate
from ..math import call_extern
from ..tensor import Tensor, compute, extern
from ._util import check_ndim, check_tensor, dims_differ, shape_str

__all__ = ["GEMM_FUNCTIONS", "matmul", "dense"]

# dtype -> the C function the backend provides for it
GEMM_FUNCTIONS = {"float32": "tl_blas_sgemm", "float64": "tl_blas_dgemm"}


def matmul(A: Tensor, B: Tensor, transpose_a: bool = False, transpose_b: bool = False,
           name: str = "matmul_blas") -> Tensor:
    """``op(A) @ op(B)`` by the BLAS, ``op(X)`` being ``X.T`` when its flag is set.

    Args:
        A: [m, k] (``transpose_a``: [k, m]), float32 or float64.
        B: [k, n] (``transpose_b``: [n, k]), the same dtype as ``A``.
        transpose_a, transpose_b: read the operand transposed (no copy is made).
        name: the stage's name.

    Returns:
        The [m, n] result of an extern stage.

    Raises:
        DTypeError: a dtype other than float32 / float64, or ``A`` and ``B`` differ.
        ShapeError: an operand is not 2-D or the inner extents differ.

    Example:
        >>> C = matmul(tl.placeholder((4, 3)), tl.placeholder((5, 3)), transpose_b=True)
        >>> C.shape
        (4, 5)
    """
    op = name
    for label, t in (("A", A), ("B", B)):
        check_tensor(op, label, t)
        check_ndim(op, label, t, 2)
    function = _gemm_function(op, A, B)
    m, k = (A.shape[1], A.shape[0]) if transpose_a else A.shape
    k_b, n = (B.shape[1], B.shape[0]) if transpose_b else B.shape
    if dims_differ(k, k_b):
        raise ShapeError(f"{op}: the inner extents differ: {A.name} {shape_str(A.shape)}"
                         f"{' (transposed)' if transpose_a else ''} and {B.name} "
                         f"{shape_str(B.shape)}{' (transposed)' if transpose_b else ''}")

    def body(ins, outs):
        a, b = ins
        c = outs[0]
        return Evaluate(call_extern(
            "void", function, int(transpose_a), int(transpose_b),
            _i32(c.shape[0]), _i32(c.shape[1]), _i32(a.shape[0 if transpose_a else 1]),
            const(1.0, A.dtype), a.data, _i32(a.shape[1]), b.data, _i32(b.shape[1]),
            const(0.0, A.dtype), c.data, _i32(c.shape[1])))

    return extern((m, n), [A, B], body, name=name, dtype=A.dtype, tag="blas_gemm")


def dense(X: Tensor, W: Tensor, bias: Tensor | None = None, name: str = "dense_blas") -> Tensor:
    """``X @ W.T (+ bias)`` by the BLAS, with TOPI's layout: ``X`` [m, k], ``W`` [n, k].

    The product is an extern stage (``<name>``); the bias adds in a second, elementwise compute
    stage (``<name>_bias``) that reads it.

    Args:
        X: [m, k] input, float32 or float64.
        W: [n, k] weight, the same dtype.
        bias: optional [n] bias, the same dtype.
        name: the product stage's name.

    Raises:
        DTypeError: an unsupported or mismatched dtype, naming the tensor.
        ShapeError: a rank or extent that does not fit, naming the tensors.

    Example:
        >>> Y = dense(tl.placeholder((8, 16)), tl.placeholder((4, 16)), tl.placeholder((4,)))
        >>> Y.shape
        (8, 4)
    """
    out = matmul(X, W, transpose_b=True, name=name)
    if bias is None:
        return out
    op = name
    check_tensor(op, "bias", bias)
    check_ndim(op, "bias", bias, 1)
    if bias.dtype != out.dtype:
        raise DTypeError(f"{op}: bias {bias.name} has dtype {bias.dtype}, but {X.name} and "
                         f"{W.name} are {out.dtype}")
    if dims_differ(bias.shape[0], out.shape[1]):
        raise ShapeError(f"{op}: bias {bias.name} {shape_str(bias.shape)} does not match the "
                         f"{out.shape[1]} rows of {W.name} {shape_str(W.shape)}")
    return compute(out.shape, lambda i, j: out[i, j] + bias[j], name=f"{name}_bias",
                   tag="elemwise")


def _gemm_function(op: str, A: Tensor, B: Tensor) -> str:
    for label, t in (("A", A), ("B", B)):
        if t.dtype not in GEMM_FUNCTIONS:
            raise DTypeError(f"{op}: {label} {t.name} has dtype {t.dtype}; the BLAS extern "
                             f"supports {' and '.join(GEMM_FUNCTIONS)}")
    if A.dtype != B.dtype:
        raise DTypeError(f"{op}: A {A.name} ({A.dtype}) and B {B.name} ({B.dtype}) must have "
                         "the same dtype")
    return GEMM_FUNCTIONS[A.dtype]


def _i32(extent):
    """An extent as the C ``int`` the BLAS takes (shape variables may be int64)."""
    return cast(extent, "int32")
