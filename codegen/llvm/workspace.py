"""Cached heap workspaces: a kernel's large intermediate buffers kept between its calls.

A buffer of constant size above :data:`CACHE_MIN_BYTES` (a data pack, an im2col matrix, the
transformed tiles of a Winograd convolution) would otherwise be ``aligned_alloc``-ed and freed
on every call; glibc serves such sizes with ``mmap`` and gives them back with ``munmap``, so
every call pays the page faults of first touch again (a 1.8 MB Winograd workspace: 1.4 ms on a
0.7 ms kernel). Each such allocation site gets a module-level slot holding one free block:

* ``<symbol>__ws_take(slot, nbytes)`` swaps the slot with null (atomically) and returns the
  block it held, or a fresh ``aligned_alloc`` block when it was empty; its result is marked
  ``noalias`` and it is never inlined, so LLVM still sees a fresh allocation;
* ``<symbol>__ws_give(slot, block)`` swaps the block into the slot and frees whatever was
  there (another thread's call of the same kernel that returned first);
* ``<symbol>__release_workspace()`` frees every cached block; the runtime calls it when the
  module is collected (``codegen.llvm.build_module``).

Concurrent calls of one kernel stay correct: only one of them finds the cached block, the
others allocate. A call that fails frees its block instead of caching it.
"""
from __future__ import annotations

from llvmlite import ir

from .types import I64, I8_PTR, declare

CACHE_MIN_BYTES = 128 * 1024
HEAP_ALIGN = 64  # bytes, of every heap buffer
_SLOT_PTR = I64.as_pointer()


def new_slot(cg) -> ir.GlobalVariable:
    """A fresh, empty cache slot of ``cg``'s module."""
    slot = ir.GlobalVariable(cg.module, I64, f"{cg.symbol}__ws{len(cg.workspace_slots)}")
    slot.linkage, slot.initializer = "internal", ir.Constant(I64, 0)
    cg.workspace_slots.append(slot)
    return slot


def take(cg, slot: ir.GlobalVariable, nbytes: ir.Value) -> ir.Value:
    return cg.b.call(_take_function(cg), [slot, nbytes])


def give(cg, slot: ir.GlobalVariable, block: ir.Value) -> None:
    cg.b.call(_give_function(cg), [slot, block])


def _helper(cg, name: str, returns, params) -> tuple[ir.Function, ir.IRBuilder, bool]:
    """The module's helper ``name`` and a builder at its entry; False when it exists."""
    full = f"{cg.symbol}__{name}"
    if full in cg.module.globals:
        return cg.module.globals[full], None, False
    fn = ir.Function(cg.module, ir.FunctionType(returns, params), full)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    fn.attributes.add("nounwind")
    return fn, ir.IRBuilder(fn.append_basic_block("entry")), True


def _take_function(cg) -> ir.Function:
    fn, b, new = _helper(cg, "ws_take", I8_PTR, [_SLOT_PTR, I64])
    if not new:
        return fn
    fn.return_value.add_attribute("noalias")
    slot, nbytes = fn.args
    cached = b.atomic_rmw("xchg", slot, ir.Constant(I64, 0), "acq_rel")
    empty = b.icmp_unsigned("==", cached, ir.Constant(I64, 0))
    with b.if_then(empty, likely=False):
        b.ret(aligned_alloc(cg, b, nbytes))
    b.ret(b.inttoptr(cached, I8_PTR))
    return fn


def aligned_alloc(cg, b: ir.IRBuilder, nbytes: ir.Value) -> ir.Value:
    """``aligned_alloc(HEAP_ALIGN, nbytes)`` (``nbytes`` a multiple of it) at ``b``."""
    return b.call(declare(cg.module, "aligned_alloc", I8_PTR, [I64, I64]),
                  [ir.Constant(I64, HEAP_ALIGN), nbytes])


def _give_function(cg) -> ir.Function:
    fn, b, new = _helper(cg, "ws_give", ir.VoidType(), [_SLOT_PTR, I8_PTR])
    if not new:
        return fn
    slot, block = fn.args
    old = b.atomic_rmw("xchg", slot, b.ptrtoint(block, I64), "acq_rel")
    with b.if_then(b.icmp_unsigned("!=", old, ir.Constant(I64, 0)), likely=False):
        _free(cg, b, old)
    b.ret_void()
    return fn


def emit_release(cg) -> None:
    """``void <symbol>__release_workspace(void)``, freeing the cached blocks (always made, so
    the runtime may look it up in any module)."""
    fn = ir.Function(cg.module, ir.FunctionType(ir.VoidType(), []),
                     f"{cg.symbol}__release_workspace")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    for slot in cg.workspace_slots:
        old = b.atomic_rmw("xchg", slot, ir.Constant(I64, 0), "acq_rel")
        with b.if_then(b.icmp_unsigned("!=", old, ir.Constant(I64, 0))):
            _free(cg, b, old)
    b.ret_void()


def _free(cg, b: ir.IRBuilder, address: ir.Value) -> None:
    b.call(declare(cg.module, "free", ir.VoidType(), [I8_PTR]), [b.inttoptr(address, I8_PTR)])
