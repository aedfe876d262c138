"""Vendor BLAS for generated code: by-value C shims over scipy's Fortran ``sgemm`` / ``dgemm``.

``tensorlang.ops.blas`` makes ``tl.extern`` stages that call ``tl_blas_sgemm`` or
``tl_blas_dgemm``. This module defines those two C functions, JIT-compiled with llvmlite (no C
compiler) and registered in LLVM's process symbol table, so kernels reach the BLAS with no Python
in the loop::

    void tl_blas_sgemm(i32 trans_a, i32 trans_b, i32 m, i32 n, i32 k, float alpha,
                       float* A, i32 lda, float* B, i32 ldb, float beta, float* C, i32 ldc)

computes ``C = alpha * op(A) @ op(B) + beta * C`` for ROW-MAJOR matrices (``op(X)`` is ``X.T``
when the flag is non-zero; ``C`` is m x n; ``lda``/``ldb``/``ldc`` are row strides in
elements). Fortran BLAS is column-major and takes every argument by pointer, so the shim stores
the scalars in stack slots and calls the column-major routine on the transposed problem
``C.T = op(B).T @ op(A).T`` (operands swapped, m and n swapped). ``tl_blas_dgemm`` is the same
in double. The Fortran entry points are the function pointers ``scipy.linalg.cython_blas``
exports (PyCapsules); each shim reads its pointer from a global set when the shims are loaded.

Threads: scipy's bundled OpenBLAS runs its own thread pool (sized by ``OPENBLAS_NUM_THREADS``,
all cores when unset), independent of tensorlang's. A BLAS call from inside one of our parallel
loops would start BLAS threads on top of ours and oversubscribe the cores, so ``tl_blas_sgemm``
/ ``tl_blas_dgemm`` must not be placed inside a parallel loop: :func:`ensure_symbol` refuses it
at code generation with ``UnsupportedOpError``. The exception is made for that purpose::

    void tl_blas_sgemm_part(..., same 13 arguments ..., i32 part, i32 parts)

computes part ``part`` of ``parts`` of the same (non-transposed) product: a band of the rows of
``C`` (and ``A``) when ``m >= n``, else a band of its columns (and ``B``'s). Called from a
parallel loop over ``part`` with the BLAS held to one thread (``graph.ops.gemm``), the product
runs on tensorlang's pool. A grouped product (a grouped convolution: ``groups`` independent
products laid out at fixed strides in ``A``, ``B`` and ``C``) adds its group and strides::

    void tl_blas_sgemm_group(..., same 15 arguments ..., i32 group, i64 stride_a,
                             i64 stride_b, i64 stride_c)

computes band ``part`` of the product of group ``group``: ``A``, ``B`` and ``C`` moved on by
``group * stride`` elements. It is made for parallel loops too.

Modules calling the shims work when JIT-compiled in this process; a shared library exported with
``export_library`` does not carry them (the symbols resolve only inside this process).
"""
from __future__ import annotations

import ctypes
import threading

import llvmlite.binding as llvm
from llvmlite import ir

from tensorlang.errors import UnsupportedOpError

__all__ = ["SHIMS", "PART_SHIMS", "GROUP_SHIMS", "ensure_symbol", "shim_address"]

# shim symbol -> (scipy.linalg.cython_blas routine, LLVM element type)
SHIMS: dict[str, tuple[str, ir.Type]] = {
    "tl_blas_sgemm": ("sgemm", ir.FloatType()),
    "tl_blas_dgemm": ("dgemm", ir.DoubleType()),
}

# band-of-the-product shims (callable inside parallel loops) -> the shim they call
PART_SHIMS: dict[str, str] = {"tl_blas_sgemm_part": "tl_blas_sgemm",
                              "tl_blas_dgemm_part": "tl_blas_dgemm"}

# the part shims of one group of a grouped product -> the part shim they call
GROUP_SHIMS: dict[str, str] = {"tl_blas_sgemm_group": "tl_blas_sgemm_part",
                               "tl_blas_dgemm_group": "tl_blas_dgemm_part"}

_I8 = ir.IntType(8)
_I32 = ir.IntType(32)
_I8_PTR = _I8.as_pointer()
_I32_PTR = _I32.as_pointer()
_lock = threading.Lock()
_engine: llvm.ExecutionEngine | None = None  # the shims live in it: kept for the process's life
_addresses: dict[str, int] = {}


def ensure_symbol(name: str, in_parallel: bool = False) -> None:
    """Make the BLAS shim ``name`` resolvable by JIT-compiled code; other names are left alone.

    Called by the code generator before it checks that an extern symbol exists. The shims are
    compiled and registered (``llvm.add_symbol``) the first time one is asked for.

    Args:
        name: the extern function a kernel calls.
        in_parallel: the call sits inside a parallel loop's body.

    Raises:
        UnsupportedOpError: a BLAS shim is called inside a parallel loop (the BLAS has its own
            threads), or scipy's BLAS is not available.

    Example:
        >>> ensure_symbol("tl_blas_sgemm")
        >>> llvm.address_of_symbol("tl_blas_sgemm") != 0
        True
    """
    if name in PART_SHIMS or name in GROUP_SHIMS:
        shim_address(name)
        return
    if name not in SHIMS:
        return
    if in_parallel:
        raise UnsupportedOpError(
            f"the BLAS extern {name!r} is called inside a parallel loop; the BLAS runs its own "
            "threads (OPENBLAS_NUM_THREADS), so keep BLAS stages out of parallel loops")
    shim_address(name)


def shim_address(name: str) -> int:
    """The address of the BLAS shim ``name`` (``tl_blas_sgemm`` / ``tl_blas_dgemm``), loading
    all shims on first use."""
    global _engine
    with _lock:
        if _engine is None:
            _engine = _load_shims()
        return _addresses[name]


def _fortran_pointer(routine: str) -> int:
    """The C address behind ``scipy.linalg.cython_blas.__pyx_capi__[routine]``."""
    try:
        # imported here, not at the top: scipy is only needed once a kernel calls a BLAS shim
        from scipy.linalg import cython_blas
    except ImportError as err:
        raise UnsupportedOpError(f"BLAS externs need scipy (scipy.linalg.cython_blas): {err}") \
            from None
    capsule = ctypes.py_object(cython_blas.__pyx_capi__[routine])
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object,
                                                                  ctypes.c_char_p]
    address = get_pointer(capsule, get_name(capsule))
    if not address:
        raise UnsupportedOpError(f"scipy.linalg.cython_blas exports no address for {routine}")
    return address


def _shim_module() -> ir.Module:
    module = ir.Module(name="tl_blas_shims")
    module.triple = llvm.get_process_triple()
    for shim, (routine, real) in SHIMS.items():
        _emit_shim(module, shim, routine, real)
    for part, shim in PART_SHIMS.items():
        _emit_part_shim(module, part, module.get_global(shim), SHIMS[shim][1])
    for group, part in GROUP_SHIMS.items():
        _emit_group_shim(module, group, module.get_global(part), SHIMS[PART_SHIMS[part]][1])
    return module


def _emit_group_shim(module: ir.Module, name: str, part: ir.Function, real: ir.Type) -> None:
    """``name(15 arguments of part, group, stride_a, stride_b, stride_c)``: ``part`` on the
    matrices of group ``group``, ``group * stride`` elements on from ``A``, ``B``, ``C``."""
    i64 = ir.IntType(64)
    args = list(part.function_type.args) + [_I32, i64, i64, i64]
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), args), name)
    *head, group, stride_a, stride_b, stride_c = fn.args
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    size = ir.Constant(i64, 4 if isinstance(real, ir.FloatType) else 8)
    group64 = builder.sext(group, i64)

    def moved(pointer, stride):
        return builder.gep(pointer, [builder.mul(builder.mul(group64, stride), size)])

    head[6], head[8] = moved(head[6], stride_a), moved(head[8], stride_b)
    head[11] = moved(head[11], stride_c)
    builder.call(part, head)
    builder.ret_void()


def _emit_part_shim(module: ir.Module, name: str, whole: ir.Function, real: ir.Type) -> None:
    """``name(13 arguments of whole, part, parts)``: ``whole`` on one band of the product."""
    i64 = ir.IntType(64)
    args = list(whole.function_type.args) + [_I32, _I32]
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), args), name)
    trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, part, parts = fn.args
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    size = ir.Constant(i64, 4 if isinstance(real, ir.FloatType) else 8)
    rows = builder.icmp_signed(">=", m, n)  # split the longer side
    total = builder.sext(builder.select(rows, m, n), i64)
    part64, parts64 = builder.sext(part, i64), builder.sext(parts, i64)
    lo = builder.sdiv(builder.mul(total, part64), parts64)
    hi = builder.sdiv(builder.mul(total, builder.add(part64, ir.Constant(i64, 1))), parts64)
    count = builder.trunc(builder.sub(hi, lo), _I32)
    with builder.if_then(builder.icmp_signed(">", count, ir.Constant(_I32, 0))):
        def offset(pointer, elements):
            return builder.gep(pointer, [builder.mul(elements, size)])
        row_a = offset(a, builder.mul(lo, builder.sext(lda, i64)))
        row_c = offset(c, builder.mul(lo, builder.sext(ldc, i64)))
        col_b, col_c = offset(b, lo), offset(c, lo)
        builder.call(whole, [
            trans_a, trans_b, builder.select(rows, count, m), builder.select(rows, n, count), k,
            alpha, builder.select(rows, row_a, a), lda, builder.select(rows, b, col_b), ldb,
            beta, builder.select(rows, row_c, col_c), ldc])
    builder.ret_void()


def _emit_shim(module: ir.Module, shim: str, routine: str, real: ir.Type) -> None:
    real_ptr = real.as_pointer()
    fortran_type = ir.FunctionType(ir.VoidType(), [
        _I8_PTR, _I8_PTR, _I32_PTR, _I32_PTR, _I32_PTR, real_ptr, _I8_PTR, _I32_PTR, _I8_PTR,
        _I32_PTR, real_ptr, _I8_PTR, _I32_PTR])
    # external linkage and a null start: the loader writes the address, LLVM must not fold it
    slot = ir.GlobalVariable(module, fortran_type.as_pointer(), f"{shim}__{routine}")
    slot.initializer = ir.Constant(fortran_type.as_pointer(), None)
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [
        _I32, _I32, _I32, _I32, _I32, real, _I8_PTR, _I32, _I8_PTR, _I32, real, _I8_PTR, _I32]),
        shim)
    trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc = fn.args
    for arg, label in zip(fn.args, ("trans_a", "trans_b", "m", "n", "k", "alpha", "A", "lda",
                                    "B", "ldb", "beta", "C", "ldc")):
        arg.name = label
    builder = ir.IRBuilder(fn.append_basic_block("entry"))

    def by_pointer(value):
        slot_ = builder.alloca(value.type)
        builder.store(value, slot_)
        return slot_

    def trans_char(flag):  # 'T' when the flag is set, else 'N'
        set_ = builder.icmp_signed("!=", flag, ir.Constant(_I32, 0))
        return by_pointer(builder.select(set_, ir.Constant(_I8, ord("T")),
                                         ir.Constant(_I8, ord("N"))))

    def at_least_one(value):  # BLAS rejects leading dimensions < 1 even for empty matrices
        small = builder.icmp_signed("<", value, ir.Constant(_I32, 1))
        return by_pointer(builder.select(small, ir.Constant(_I32, 1), value))

    # row-major C = op(A) op(B)  <=>  column-major C.T = op(B).T op(A).T
    target = builder.load(slot)
    builder.call(target, [trans_char(trans_b), trans_char(trans_a), by_pointer(n), by_pointer(m),
                          by_pointer(k), by_pointer(alpha), b, at_least_one(ldb), a,
                          at_least_one(lda), by_pointer(beta), c, at_least_one(ldc)])
    builder.ret_void()


def _load_shims() -> llvm.ExecutionEngine:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    pointers = {shim: _fortran_pointer(routine) for shim, (routine, _) in SHIMS.items()}
    target = llvm.Target.from_triple(llvm.get_process_triple())
    machine = target.create_target_machine(opt=2)
    module = _shim_module()
    module.data_layout = str(machine.target_data)
    parsed = llvm.parse_assembly(str(module))
    parsed.verify()
    engine = llvm.create_mcjit_compiler(parsed, machine)
    engine.finalize_object()
    for shim, (routine, _) in SHIMS.items():
        slot = engine.get_global_value_address(f"{shim}__{routine}")
        ctypes.c_void_p.from_address(slot).value = pointers[shim]
        _addresses[shim] = engine.get_function_address(shim)
        llvm.add_symbol(shim, _addresses[shim])
    for part in (*PART_SHIMS, *GROUP_SHIMS):
        _addresses[part] = engine.get_function_address(part)
        llvm.add_symbol(part, _addresses[part])
    return engine
