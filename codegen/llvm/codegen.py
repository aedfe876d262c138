"""Loop-IR statements and functions to LLVM IR: the heart of the CPU code generator.

:func:`lower_to_llvm` turns a flattened PrimFunc into an llvmlite module holding:

* ``<name>__impl``: the kernel, an internal function with typed, ``noalias`` pointer
  parameters, the scalar parameters and the symbolic extents; it returns 0 or an error code;
* the exported entry points of the C ABI (see :mod:`codegen.llvm.abi`);
* one outlined task function per parallel loop (see :mod:`codegen.llvm.parallel`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from llvmlite import ir

from tensorlang import dtype as dt
from tensorlang import expr as E
from tensorlang.errors import InternalError, UnsupportedOpError, UserError
from tensorlang.ir import stmt as S
from tensorlang.ir.function import PrimFunc

from . import abi, parallel, workspace
from .codegen_expr import ExprCodegen, vector_access_kind
from .scope import DataPointer, FunctionScope
from .target import Target
from .types import I1, I32, I64, I8_PTR, constant, declare, element_bytes, llvm_type, \
    memory_type

UNROLL_LIMIT = 64  # unrolled loops up to this constant extent are copied out in the IR
STACK_LIMIT = 64 * 1024  # bigger "local" buffers go to the heap (pool threads' stacks are small)
HEAP_ALIGN = workspace.HEAP_ALIGN


@dataclass
class LoweredModule:
    """An llvmlite module and what the runtime needs to call it."""

    module: ir.Module
    signature: object  # tensorlang.runtime.module.Signature
    launch_global: str | None  # the parallel-launch pointer to bind at load time, if any


def lower_to_llvm(func: PrimFunc, target: Target, check_symbols: bool = True) -> LoweredModule:
    """Translate the flattened PrimFunc ``func`` into an LLVM module for ``target``.

    Args:
        func: a PrimFunc after storage flattening (one index per buffer access).
        target: the CPU target; its thread count splits parallel loops.
        check_symbols: require extern functions to resolve in this process (off when
            cross-compiling).

    Raises:
        UserError: the IR is not flattened, uses an unbound variable, or is malformed.
        UnsupportedOpError: an op, dtype or loop kind this backend does not handle.

    Example:
        >>> lowered = lower_to_llvm(func, parse_target("llvm"))
        >>> print(lowered.module)  # doctest: +SKIP
    """
    return CodeGen(func, target, check_symbols).run()


def symbol_name(func: PrimFunc) -> str:
    """The C symbol of ``func``: its ``global_symbol`` attr or name, as an identifier."""
    name = str(func.attr("global_symbol", func.name) or "main")
    name = re.sub(r"\W", "_", name)
    return "_" + name if name[0].isdigit() else name


class CodeGen(ExprCodegen):
    """Emits one PrimFunc; statement methods are ``_s_<Class>``."""

    def __init__(self, func: PrimFunc, target: Target, check_symbols: bool) -> None:
        self.func = func
        self.target = target
        self.check_symbols = check_symbols
        self.symbol = symbol_name(func)
        self.module = ir.Module(name=self.symbol)
        self.module.triple = target.triple
        self.errors: list[tuple[str, str]] = []  # (kind, message); error code = index + 1
        self.extern_symbols: set[str] = set()
        self.parallel_count = 0
        self.nontemporal = 0  # depth of loops with pragma nontemporal around the statement
        self.launch_global: ir.GlobalVariable | None = None
        self.scope: FunctionScope | None = None
        self.workspace_slots: list[ir.GlobalVariable] = []  # see codegen.llvm.workspace

    def run(self) -> LoweredModule:
        params, shape_vars = abi.check_params(self.func)
        kernel_params = [p.data if not isinstance(p, E.Var) else p for p in params] + shape_vars
        aligns = {p.data.uid: element_bytes(p.dtype) for p in params if not isinstance(p, E.Var)}
        non_negative = {v.uid for v in shape_vars}
        kernel = self.emit_function(f"{self.symbol}__impl", kernel_params, aligns,
                                    self.func.body, in_parallel=False, non_negative=non_negative)
        abi.emit_entry_points(self, kernel, params, shape_vars)
        workspace.emit_release(self)
        clash = {self.symbol} & (self.extern_symbols | {"aligned_alloc", "free"})
        if clash:
            raise UserError(f"the kernel name {self.symbol!r} clashes with a C function the "
                            "kernel calls; name the function differently")
        signature = abi.signature_of(self.func, self.symbol, params, shape_vars, self.errors,
                                     str(self.target))
        launch = self.launch_global.name if self.launch_global is not None else None
        return LoweredModule(self.module, signature, launch)

    # -- functions ------------------------------------------------------------------------------
    def emit_function(self, name: str, params: list, aligns: dict, body, *, in_parallel: bool,
                      non_negative: set, multiples: dict | None = None) -> ir.Function:
        """An internal ``i32 name(params...)`` running ``body``; returns 0 or an error code.

        ``params`` are Vars: ``handle`` ones are buffer bases (``noalias`` pointers with the
        byte alignment in ``aligns``), the rest scalars.
        """
        types = [I8_PTR if v.dtype == "handle" else llvm_type(v.dtype) for v in params]
        fn = ir.Function(self.module, ir.FunctionType(I32, types), name)
        fn.linkage = "internal"
        fn.attributes.add("nounwind")
        outer, self.scope = self.scope, FunctionScope(fn, in_parallel)
        try:
            for var, arg in zip(params, fn.args):
                arg.name = var.name
                if var.dtype == "handle":
                    arg.add_attribute("noalias")
                    self.scope.data[var.uid] = DataPointer(arg, aligns.get(var.uid, 1))
                else:
                    self.scope.values[var.uid] = arg
            self.scope.non_negative |= non_negative
            self.scope.multiples.update(multiples or {})
            self.stmt(body)
            self.b.ret(ir.Constant(I32, 0))
        finally:
            self.scope = outer
        return fn

    def error_code(self, kind: str, message: str) -> int:
        self.errors.append((kind, message))
        return len(self.errors)

    def fail(self, code: ir.Value) -> None:
        """Free the live heap blocks and return ``code`` from the current function."""
        free = declare(self.module, "free", ir.VoidType(), [I8_PTR])
        for block in reversed(self.scope.heap):
            self.b.call(free, [block])
        self.b.ret(code)

    def check(self, ok: ir.Value, code: int | ir.Value, name: str = "check") -> None:
        """Continue if ``ok`` holds, else fail with ``code``."""
        fn = self.scope.function
        fail_bb, ok_bb = fn.append_basic_block(f"{name}.fail"), fn.append_basic_block(name)
        self.b.cbranch(ok, ok_bb, fail_bb)
        self.b.position_at_end(fail_bb)
        self.fail(code if isinstance(code, ir.Value) else ir.Constant(I32, code))
        self.b.position_at_end(ok_bb)

    # -- statements -----------------------------------------------------------------------------
    def stmt(self, s) -> None:
        method = getattr(self, "_s_" + type(s).__name__, None)
        if method is None:
            raise InternalError(f"no LLVM code generation for statement {type(s).__name__}")
        method(s)

    def _s_SeqStmt(self, s):
        for item in s.seq:
            self.stmt(item)

    def _s_Evaluate(self, s):
        if not isinstance(s.value, (E.IntImm, E.FloatImm)):
            self.expr(s.value)

    def _s_AttrStmt(self, s):
        self.stmt(s.body)

    def _s_LetStmt(self, s):
        previous = self.scope.bind(s.var, self.expr(s.value))
        self.note_facts(s.var, s.value)
        self.stmt(s.body)
        self.scope.unbind(s.var, previous)

    def _s_AssertStmt(self, s):
        self.check(self.expr(s.condition), self.error_code("assert", s.message), "assert")
        self.stmt(s.body)

    def _s_IfThenElse(self, s):
        known = s.condition.value if isinstance(s.condition, E.IntImm) else None
        if known is not None:
            if known:
                self.stmt(s.then_case)
            elif s.else_case is not None:
                self.stmt(s.else_case)
            return
        fn = self.scope.function
        then_bb = fn.append_basic_block("then")
        else_bb = fn.append_basic_block("else") if s.else_case is not None else None
        end_bb = fn.append_basic_block("endif")
        self.b.cbranch(self.expr(s.condition), then_bb, else_bb or end_bb)
        self.b.position_at_end(then_bb)
        self.stmt(s.then_case)
        self.b.branch(end_bb)
        if else_bb is not None:
            self.b.position_at_end(else_bb)
            self.stmt(s.else_case)
            self.b.branch(end_bb)
        self.b.position_at_end(end_bb)

    def _s_BufferStore(self, s):
        index = self._flat_index(s.buffer, s.indices)
        pointer = self.scope.pointer(s.buffer.data)
        dtype = s.value.dtype
        lanes, element = dt.lanes_of(dtype), dt.element_of(dtype)
        value = self.to_memory(self.expr(s.value), dtype)
        b = self.b
        if lanes == 1:
            address = self._element_address(pointer, element, self.expr(index))
            b.store(value, address, align=element_bytes(element))
            return
        if vector_access_kind(index) == "contiguous":
            base = index.base if isinstance(index, E.Ramp) else index
            address = b.bitcast(self._element_address(pointer, element, self.expr(base)),
                                memory_type(dtype).as_pointer())
            align = self._access_align(pointer, base, element)
            if self.nontemporal and s.buffer.scope == "global":
                self._streaming_store(value, address, align, element_bytes(element) * lanes,
                                      self.known_multiple(base) * element_bytes(element))
                return
            b.store(value, address, align=align)
            return
        indices = self.expr(index)  # a scatter, lane by lane (later lanes win, as in order)
        for lane in range(lanes):
            position = ir.Constant(I32, lane)
            address = self._element_address(pointer, element, b.extract_element(indices, position))
            b.store(b.extract_element(value, position), address, align=element_bytes(element))

    def _streaming_store(self, value, address, align: int, size: int, multiple: int) -> None:
        """pragma ``nontemporal``: a store that bypasses the caches (no read for ownership).
        Such stores need ``size``-byte alignment; where only the offset's alignment is known
        (``multiple``), the pointer's is tested at run time (the test is loop-invariant, so
        LLVM hoists it) and an ordinary store serves unaligned arrays."""
        b = self.b
        nt = self.module.add_metadata([ir.Constant(I32, 1)])
        if align >= size:
            b.store(value, address, align=align).set_metadata("nontemporal", nt)
            return
        if multiple % size:
            b.store(value, address, align=align)
            return
        aligned = b.icmp_unsigned("==", b.and_(b.ptrtoint(address, I64), ir.Constant(I64, size - 1)),
                                  ir.Constant(I64, 0))
        with b.if_else(aligned) as (then, otherwise):
            with then:
                b.store(value, address, align=size).set_metadata("nontemporal", nt)
            with otherwise:
                b.store(value, address, align=align)

    def _s_Allocate(self, s):
        buf = s.buffer
        element = memory_type(dt.element_of(buf.dtype))
        size = element_bytes(buf.dtype) * dt.lanes_of(buf.dtype)
        extents = buf.allocation_extents()
        constant_shape = all(isinstance(extent, E.IntImm) for extent in extents)
        count = math.prod(extent.value for extent in extents) if constant_shape else None
        if count is not None and buf.scope != "global" and count * size <= STACK_LIMIT:
            slot = self.scope.alloca(ir.ArrayType(element, max(count, 1) * dt.lanes_of(buf.dtype)),
                                     HEAP_ALIGN, name=buf.name)
            self._with_data(buf, self.b.bitcast(slot, I8_PTR), s.body)
            return
        nbytes = self._allocation_bytes(buf, size)
        slot = None
        if count is not None and count * size >= workspace.CACHE_MIN_BYTES:
            slot = workspace.new_slot(self)  # kept between calls: no page faults per call
            block = workspace.take(self, slot, nbytes)
        else:
            block = workspace.aligned_alloc(self, self.b, nbytes)
        code = self.error_code("oom", f"out of memory allocating buffer {buf.name!r}")
        self.check(self.b.icmp_unsigned("!=", block, ir.Constant(I8_PTR, None)), code, "alloc")
        self.scope.heap.append(block)
        self._with_data(buf, block, s.body)
        self.scope.heap.pop()
        if slot is not None:
            workspace.give(self, slot, block)
        else:
            self.b.call(declare(self.module, "free", ir.VoidType(), [I8_PTR]), [block])

    def _allocation_bytes(self, buf, size: int) -> ir.Value:
        b = self.b
        total = ir.Constant(I64, size)
        for extent in buf.allocation_extents():
            value = self.expr(extent)
            value = b.sext(value, I64) if value.type.width < 64 else value
            total = b.mul(total, value)
        # aligned_alloc wants a multiple of the alignment, and never 0
        rounded = b.and_(b.add(total, ir.Constant(I64, HEAP_ALIGN - 1)),
                         ir.Constant(I64, -HEAP_ALIGN))
        return b.select(b.icmp_signed(">", rounded, ir.Constant(I64, 0)), rounded,
                        ir.Constant(I64, HEAP_ALIGN))

    def _with_data(self, buf, pointer: ir.Value, body) -> None:
        previous = self.scope.data.get(buf.data.uid)
        self.scope.data[buf.data.uid] = DataPointer(pointer, HEAP_ALIGN)
        self.stmt(body)
        if previous is None:
            del self.scope.data[buf.data.uid]
        else:
            self.scope.data[buf.data.uid] = previous

    # -- loops ----------------------------------------------------------------------------------
    def _s_For(self, s):
        streaming = "nontemporal" in dict(s.annotations)
        self.nontemporal += streaming
        try:
            self._loop(s)
        finally:
            self.nontemporal -= streaming

    def _loop(self, s):
        if s.kind == S.THREAD_BINDING:
            tag = s.thread_tag or "a GPU thread axis"
            raise UnsupportedOpError(f"loop {s.loop_var.name!r} bound to {tag} needs the CUDA "
                                     "target; the llvm target runs on the CPU")
        if s.kind == S.PARALLEL:
            parallel.emit_parallel_for(self, s)
            return
        if s.kind == S.UNROLLED:
            extent = s.extent.value if isinstance(s.extent, E.IntImm) else None
            if extent is not None and extent <= UNROLL_LIMIT:
                self._unrolled(s, extent)
                return
            key = "llvm.loop.unroll.full" if extent is not None else "llvm.loop.unroll.enable"
            self.serial_loop(s, [(key, None)])
            return
        if s.kind == S.VECTORIZED:  # the vectorizer pass left it: ask LLVM to vectorize
            self.serial_loop(s, [("llvm.loop.vectorize.enable", True)])
            return
        if s.kind != S.SERIAL:
            raise UnsupportedOpError(f"loop kind {s.kind!r} of {s.loop_var.name!r} is not "
                                     "supported by the LLVM CPU backend")
        pragmas = dict(s.annotations)
        extent = s.extent.value if isinstance(s.extent, E.IntImm) else None
        limit = pragmas.get("unroll_explicit", pragmas.get("auto_unroll_max_step"))
        if limit is not None and extent is not None and extent <= int(limit):
            self._unrolled(s, extent)
            return
        self.serial_loop(s, loop_pragmas(s, pragmas))

    def _unrolled(self, s, extent: int) -> None:
        """Copy the body out ``extent`` times (register tiles become straight-line code)."""
        start = self.int_value(s.min, s.loop_var.dtype)
        distance = dict(s.annotations).get("prefetch")
        for k in range(extent):
            value = start if k == 0 else self.b.add(start, constant(s.loop_var.dtype, k))
            if isinstance(s.min, E.IntImm):
                value = constant(s.loop_var.dtype, s.min.value + k)
            previous = self.scope.bind(s.loop_var, value)
            if self.known_non_negative(s.min):
                self.scope.non_negative.add(s.loop_var.uid)
            if distance:
                self._prefetch(s, int(distance))
            self.stmt(s.body)
            self.scope.unbind(s.loop_var, previous)

    def int_value(self, e, dtype: str) -> ir.Value:
        """Integer expression ``e`` as ``dtype``."""
        return self.convert(self.expr(e), e.dtype, dtype)

    def serial_loop(self, s, metadata: list | None = None) -> None:
        """``for var in [min, min + extent)`` with a phi counter; optional loop metadata."""
        dtype = s.loop_var.dtype
        begin = self.int_value(s.min, dtype)
        end = self.b.add(begin, self.int_value(s.extent, dtype), flags=["nsw"])
        b, fn = self.b, self.scope.function
        preheader = b.block
        header = fn.append_basic_block(f"for.{s.loop_var.name}")
        body = fn.append_basic_block(f"for.{s.loop_var.name}.body")
        exit_bb = fn.append_basic_block(f"for.{s.loop_var.name}.end")
        b.branch(header)
        b.position_at_end(header)
        counter = b.phi(llvm_type(dtype), name=s.loop_var.name)
        counter.add_incoming(begin, preheader)
        b.cbranch(b.icmp_signed("<", counter, end), body, exit_bb)
        b.position_at_end(body)
        previous = self.scope.bind(s.loop_var, counter)
        if self.known_non_negative(s.min):
            self.scope.non_negative.add(s.loop_var.uid)
        distance = dict(s.annotations).get("prefetch")
        if distance:
            self._prefetch(s, int(distance))
        self.stmt(s.body)
        self.scope.unbind(s.loop_var, previous)
        step = b.add(counter, constant(dtype, 1), flags=["nsw"])
        counter.add_incoming(step, b.block)
        latch = b.branch(header)
        if metadata:
            latch.set_metadata("llvm.loop", self._loop_metadata(metadata))
        b.position_at_end(exit_bb)

    def _prefetch(self, loop, distance: int) -> None:
        """``pragma(ax, "prefetch", d)``: at the top of each iteration, prefetch what the loads
        of the body read ``d`` iterations later (loads whose index only uses variables bound
        here)."""
        from tensorlang.ir.functor import free_vars, post_order_visit, substitute
        seen = set()

        def visit(node):
            if not isinstance(node, E.BufferLoad) or len(node.indices) != 1:
                return
            index = node.indices[0]
            index = index.base if isinstance(index, E.Ramp) else index
            used = free_vars(E.Cast(index, "int64"))
            if not any(v.uid == loop.loop_var.uid for v in used):
                return
            if not all(v.uid in self.scope.values for v in used):
                return  # needs an inner loop variable: not computable here
            ahead = substitute(index, {loop.loop_var: loop.loop_var + distance})
            key = (node.buffer.uid, str(ahead))
            if key in seen:
                return
            seen.add(key)
            pointer = self.scope.pointer(node.buffer.data)
            element = dt.element_of(node.buffer.dtype)
            address = self._element_address(pointer, element, self.expr(ahead))
            prefetch = _declare_prefetch(self.module)
            self.b.call(prefetch, [self.b.bitcast(address, I8_PTR), ir.Constant(I32, 0),
                                   ir.Constant(I32, 3), ir.Constant(I32, 1)])

        post_order_visit(loop.body, visit)

    def _loop_metadata(self, properties: list) -> ir.MDValue:
        operands = []
        for key, value in properties:
            items = [ir.MetaDataString(self.module, key)]
            if isinstance(value, bool):
                items.append(ir.Constant(I1, int(value)))
            elif isinstance(value, int):
                items.append(ir.Constant(ir.IntType(32), value))
            operands.append(self.module.add_metadata(items))
        # A loop ID refers to itself; make it unique first, then point it at itself.
        placeholder = ir.MetaDataString(self.module, f"tl.loop.{len(self.module.metadata)}")
        loop_id = self.module.add_metadata([placeholder] + operands)
        loop_id.operands = (loop_id, *operands)
        return loop_id


def loop_pragmas(loop, pragmas: dict) -> list:
    """LLVM loop metadata for the ``pragma`` keys of a serial loop.

    ``unroll`` (an int: unroll by that count; True: let LLVM unroll), ``unroll_explicit`` /
    ``auto_unroll_max_step`` (copy the body out when the extent is at most the value; handled by
    the caller), ``vectorize`` (True: ask LLVM's loop vectorizer), ``parallel_chunk`` (used by
    parallel loops: tasks of that many iterations, a dynamic schedule), ``prefetch`` (a distance
    in iterations: software prefetch of the body's loads), ``nontemporal`` (True: aligned vector
    stores to global buffers in the body bypass the caches; for outputs too large to stay in
    cache and not read again soon). Unknown keys are refused so a typo does not pass silently.
    """
    metadata = []
    for key, value in pragmas.items():
        if key == "unroll":
            if value is True or value is None:
                metadata.append(("llvm.loop.unroll.enable", None))
            elif isinstance(value, int) and value > 0:
                metadata.append(("llvm.loop.unroll.count", int(value)))
            else:
                raise UserError(f"loop {loop.loop_var.name!r}: pragma unroll needs a positive "
                                f"count or True, got {value!r}")
        elif key == "vectorize":
            metadata.append(("llvm.loop.vectorize.enable", True))
        elif key == "prefetch":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"loop {loop.loop_var.name!r}: pragma prefetch needs a positive "
                                f"distance in iterations, got {value!r}")
        elif key == "parallel_chunk":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"loop {loop.loop_var.name!r}: pragma parallel_chunk needs a "
                                f"positive iteration count, got {value!r}")
        elif key == "nontemporal":
            if value is not True:
                raise UserError(f"loop {loop.loop_var.name!r}: pragma nontemporal takes True, "
                                f"got {value!r}")
        elif key not in ("unroll_explicit", "auto_unroll_max_step"):
            raise UserError(f"loop {loop.loop_var.name!r}: unknown pragma {key!r} (known: "
                            "unroll, unroll_explicit, auto_unroll_max_step, vectorize, "
                            "parallel_chunk, prefetch, nontemporal)")
    return metadata


def _declare_prefetch(module: ir.Module) -> ir.Function:
    """``void llvm.prefetch.p0(ptr address, i32 rw, i32 locality, i32 cache_type)``."""
    name = "llvm.prefetch.p0"
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    return ir.Function(module, ir.FunctionType(ir.VoidType(), [I8_PTR, I32, I32, I32]), name)
