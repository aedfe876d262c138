"""Convolution and dense layers through the vendor BLAS (``tl_blas_sgemm``, see
``tensorlang.ops.blas``), for the batch-1 float32 layers of CNNs.

A convolution of one image is one matrix product: ``weight [CO, CI*KH*KW] @ cols [CI*KH*KW,
OH*OW]``, where ``cols`` (im2col) holds, for each output pixel, the input window it reads — a
compute stage of shape ``(CI, KH, KW, OH, OW)``, whose row-major memory is that matrix. A 1x1
convolution with stride 1 and no padding reads the NCHW input itself as ``cols``. The product is
an extern stage; bias, normalisation and activation consumers are ordinary compute stages after
it. With the untuned default schedules this is 2-10x faster than the native convolution on the
light models' layers (odd spatial extents such as 55 or 13 leave the native tiles no vector
width); the extern stage has no tuning knobs, so :func:`use_blas_conv2d` keeps it to the case it
wins: float32, batch 1, not depthwise. A grouped convolution is one product per group (its
matrices lie at fixed strides in the weight, the input (or its im2col) and the output, so it is
one extern stage too, with one product per group (``tl_blas_sgemm_group``) and no copies.
"""
from __future__ import annotations

from tensorlang import math as tm
from tensorlang.expr import Var, cast, const
from tensorlang.ir.stmt import PARALLEL, SERIAL, Evaluate, For
from tensorlang.math import call_extern
from tensorlang.ops._util import const_int
from tensorlang.tensor import compute, extern


def _i32(value):
    return cast(value, "int32")


def use_blas_conv2d(data, weight, groups: int) -> bool:
    """Whether :func:`conv2d_blas` computes this convolution: float32, batch 1, static and
    consistent shapes (else the native operator reports the error), and not depthwise (one
    tiny product per channel loses to the native kernel)."""
    dims = [const_int(d) for d in (*data.shape, *weight.shape)]
    if data.dtype != "float32" or weight.dtype != "float32" or len(dims) != 8 or \
            any(d is None or d <= 0 for d in dims) or groups < 1:
        return False
    n, ci, _, _, co, cig, _, _ = dims
    return n == 1 and cig * groups == ci and co % groups == 0 and cig * (co // groups) >= 64


# a product is cut into bands of at least this many rows or columns
MIN_BAND = 32


def gemm_bands(m: int, n: int) -> int:
    """How many bands :func:`_gemm_call` cuts an ``m x n`` product into: one per thread of the
    pool (each band's sgemm packs the shared operand again, so more bands than threads only
    cost: ResNet-50 on 1 thread took 1.2x longer with 16 bands than with one call), 1 = one
    plain call."""
    from tensorlang.runtime import get_num_threads
    return max(1, min(get_num_threads(), max(m, n) // MIN_BAND))


def _gemm_call(m: int, n: int, k: int, groups: int = 1):
    """The extern body ``C[m, n] = A[m, k] @ B[k, n]`` (row-major), or with ``groups`` that many
    such products laid end to end in ``A``, ``B`` and ``C`` (a grouped convolution). With several
    threads, a parallel loop over bands of the longer side (and over the groups), each one
    ``tl_blas_sgemm_part`` / ``tl_blas_sgemm_group`` call (codegen/llvm/blas.py), so the product
    runs on tensorlang's thread pool with the BLAS itself on one thread (see
    :func:`single_threaded_blas`); on one thread, one plain call per group."""
    from tensorlang.runtime import get_num_threads
    threads = get_num_threads()
    if groups == 1:
        bands = gemm_bands(m, n)
    else:  # the groups share the threads; bands too only where they would not come out even
        bands = 1 if groups % threads == 0 else gemm_bands(m, n)

    def operands(a, b, c):
        return [0, 0, _i32(m), _i32(n), _i32(k), const(1.0, "float32"), a.data, _i32(k),
                b.data, _i32(n), const(0.0, "float32"), c.data, _i32(n)]

    def gemm(ins, outs):
        args = operands(*ins, outs[0])
        if groups == 1 and bands == 1:
            return Evaluate(call_extern("void", "tl_blas_sgemm", *args))
        index = Var("band", "int32")
        if groups == 1:
            call = call_extern("void", "tl_blas_sgemm_part", *args, index, _i32(bands))
        else:
            strides = [const(v, "int64") for v in (m * k, k * n, m * n)]
            call = call_extern("void", "tl_blas_sgemm_group", *args, index % bands,
                               _i32(bands), index // bands, *strides)
        kind = PARALLEL if threads > 1 and groups * bands > 1 else SERIAL
        return For(index, const(0, "int32"), const(groups * bands, "int32"), kind,
                   Evaluate(call))

    return gemm


def conv2d_blas(data, weight, strides, pads, dilations, groups: int = 1):
    """NCHW x OIHW convolution of one image (``pads``: top, left, bottom, right) as im2col and
    one ``sgemm`` per group, all in one extern stage; returns the [1, CO, OH, OW] result."""
    h, w = const_int(data.shape[2]), const_int(data.shape[3])
    co, cig, kh, kw = (const_int(d) for d in weight.shape)
    oh = (h + pads[0] + pads[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (w + pads[1] + pads[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    k, n = cig * kh * kw, oh * ow
    if (kh, kw) == (1, 1) and tuple(strides) == (1, 1) and not any(pads):
        cols = data  # group g's rows are its cig channels, cig * n elements apart
    else:  # every channel's windows: group g's matrix is the g-th block of cig channels
        cols = compute((cig * groups, kh, kw, oh, ow), _window(data, strides, pads, dilations),
                       name="T_im2col", tag="injective,im2col")
    # the OIHW weight is, for group g, the [CO / groups, k] matrix at row g * CO / groups
    return extern((1, co, oh, ow), [weight, cols], _gemm_call(co // groups, n, k, groups),
                  name="T_conv2d_blas", dtype="float32", tag="blas_gemm")


def _window(data, strides, pads, dilations):
    """im2col's body: input channel ``c`` at kernel offset (y, x) for output
    pixel (i, j), zero in the padding."""
    h, w = const_int(data.shape[2]), const_int(data.shape[3])
    zero = const(0.0, data.dtype)

    def window(c, y, x, i, j):
        row = i * strides[0] + y * dilations[0] - pads[0]
        col = j * strides[1] + x * dilations[1] - pads[1]
        inside = tm.all(row >= 0, row < h, col >= 0, col < w)
        return tm.if_then_else(inside, data[0, c, row, col], zero)
    return window


def single_threaded_blas() -> bool:
    """Run scipy's OpenBLAS (the one the ``tl_blas_sgemm`` shim calls) on one thread in this
    process; True if it was found. Between the kernels of a model the tensorlang thread pool's
    workers spin, and OpenBLAS's own threads spin too: with both on the same cores, each BLAS
    call waits for time slices (squeezenet on 2 threads: 390 ms instead of 30 ms). NumPy's own
    BLAS is a separate library and is left as it is."""
    import ctypes
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "scipy.libs" in line and
                     "openblas" in line.lower()}
    except OSError:
        return False
    done = False
    for path in paths:
        library = ctypes.CDLL(path)
        for symbol in ("scipy_openblas_set_num_threads", "openblas_set_num_threads"):
            setter = getattr(library, symbol, None)
            if setter is not None:
                setter(1)
                done = True
                break
    return done


__all__ = ["use_blas_conv2d", "conv2d_blas", "single_threaded_blas"]
