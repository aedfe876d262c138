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
im2col and weight slice as compute stages) and a stage that puts the groups together.
"""
from __future__ import annotations

from tensorlang import math as tm
from tensorlang.expr import Var, cast, const
from tensorlang.ir.stmt import PARALLEL, Evaluate, For
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


def _gemm_call(m: int, n: int, k: int):
    """The extern body ``C[m, n] = A[m, k] @ B[k, n]`` (row-major): with several threads, a
    parallel loop over bands of the longer side, each one ``tl_blas_sgemm_part`` call
    (codegen/llvm/blas.py), so the product runs on tensorlang's thread pool with the BLAS
    itself on one thread (see :func:`single_threaded_blas`); on one thread one plain call."""
    bands = gemm_bands(m, n)

    def gemm(ins, outs):
        a, b = ins
        if bands == 1:
            return Evaluate(call_extern(
                "void", "tl_blas_sgemm", 0, 0, _i32(m), _i32(n), _i32(k),
                const(1.0, "float32"), a.data, _i32(k), b.data, _i32(n), const(0.0, "float32"),
                outs[0].data, _i32(n)))
        part = Var("band", "int32")
        call = Evaluate(call_extern(
            "void", "tl_blas_sgemm_part", 0, 0, _i32(m), _i32(n), _i32(k),
            const(1.0, "float32"), a.data, _i32(k), b.data, _i32(n), const(0.0, "float32"),
            outs[0].data, _i32(n), part, _i32(bands)))
        return For(part, const(0, "int32"), const(bands, "int32"), PARALLEL, call)

    return gemm


def conv2d_blas(data, weight, strides, pads, dilations, groups: int = 1):
    """NCHW x OIHW convolution of one image (``pads``: top, left, bottom, right) as im2col and
    one ``sgemm`` per group; returns the [1, CO, OH, OW] result (the extern stage, or with
    groups the concatenation of one extern stage per group)."""
    h, w = const_int(data.shape[2]), const_int(data.shape[3])
    co, cig, kh, kw = (const_int(d) for d in weight.shape)
    oh = (h + pads[0] + pads[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (w + pads[1] + pads[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    cog = co // groups
    k, n = cig * kh * kw, oh * ow
    parts = []
    for g in range(groups):
        if (kh, kw) == (1, 1) and tuple(strides) == (1, 1) and not any(pads) and groups == 1:
            cols = data
        else:
            cols = compute((cig, kh, kw, oh, ow), _window(data, g * cig, strides, pads, dilations),
                           name=f"T_im2col_{g}", tag="injective,im2col")
        part_weight = weight if groups == 1 else compute(
            (cog, cig, kh, kw), _shifted(weight, g * cog), name=f"T_weight_{g}",
            tag="injective")
        parts.append(extern((1, cog, oh, ow), [part_weight, cols],
                            _gemm_call(cog, n, k),
                            name=f"T_conv2d_blas_{g}", dtype="float32", tag="blas_gemm"))
    if groups == 1:
        return parts[0]
    return compute((1, co, oh, ow), lambda b, c, i, j: _select_group(parts, cog, b, c, i, j),
                   name="T_conv2d_blas_groups", tag="injective")


def _window(data, first_channel, strides, pads, dilations):
    """im2col's body: input channel ``first_channel + c`` at kernel offset (y, x) for output
    pixel (i, j), zero in the padding."""
    h, w = const_int(data.shape[2]), const_int(data.shape[3])
    zero = const(0.0, data.dtype)

    def window(c, y, x, i, j):
        row = i * strides[0] + y * dilations[0] - pads[0]
        col = j * strides[1] + x * dilations[1] - pads[1]
        inside = tm.all(row >= 0, row < h, col >= 0, col < w)
        return tm.if_then_else(inside, data[0, c + first_channel, row, col], zero)
    return window


def _shifted(weight, first):
    return lambda o, c, y, x: weight[o + first, c, y, x]


def _select_group(parts, cog, b, c, i, j):
    out = parts[-1][b, c - (len(parts) - 1) * cog, i, j]
    for g in range(len(parts) - 2, -1, -1):
        out = tm.if_then_else(c < (g + 1) * cog, parts[g][b, c - g * cog, i, j], out)
    return out




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
