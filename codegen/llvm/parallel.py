"""Parallel loops: outline the body into a task function and launch it on the thread pool.

For ``for i in parallel(min, min + extent): body`` the code generator emits

* ``i32 <name>__par<k>_impl(i64 begin, i64 end, <free variables>)``: the loop over one chunk,
  with ``noalias`` buffer pointers (inlining turns them into alias scopes, so the chunk loop
  vectorises without runtime alias checks);
* ``void <name>__par<k>(i64 task_id, i64 num_tasks, i8* closure)``: unpacks the closure (a
  struct of every free variable of the body), computes its contiguous chunk of the range, runs
  the impl and records a failure code in the closure's error slot;
* at the loop's place: fill the closure, call ``tl_parallel_launch(task_fn, closure,
  min(num_threads, extent))`` through the module's launch pointer, then check the error slot.
  With ``pragma(ax, "parallel_chunk", c)`` the loop is cut into tasks of about ``c`` iterations
  instead, which the pool hands out one at a time (a dynamic schedule for uneven work).

The launch pointer ``<name>__parallel_launch`` starts out at a serial launcher inside the module
(so an exported library runs on its own) and is pointed at the pool's ``tl_parallel_launch``
when the module is loaded into a process that has the pool. Parallel loops inside a task run
serially.
"""
from __future__ import annotations

from llvmlite import ir

from tensorlang import expr as E
from tensorlang.ir import stmt as S
from tensorlang.ir.functor import free_vars, post_order_visit

from .types import I32, I64, I8_PTR, VOID

TASK_TYPE = ir.FunctionType(VOID, [I64, I64, I8_PTR])
LAUNCH_TYPE = ir.FunctionType(VOID, [TASK_TYPE.as_pointer(), I8_PTR, I64])


def emit_parallel_for(cg, loop: S.For) -> None:
    """Emit the parallel ``loop`` into ``cg`` (a CodeGen); serial where nesting or 1 thread."""
    if cg.scope.in_parallel or cg.target.num_threads <= 1:
        cg.serial_loop(loop)
        return
    k = cg.parallel_count
    cg.parallel_count += 1
    captures = _captured_vars(cg, loop)
    impl = _emit_chunk_function(cg, loop, captures, f"{cg.symbol}__par{k}_impl")
    scope = cg.scope
    field_types = [I32.as_pointer(), I64, I64] + [_capture_type(scope, v) for v in captures]
    closure_type = ir.LiteralStructType(field_types)
    task = _emit_task_function(cg, f"{cg.symbol}__par{k}", impl, closure_type, len(captures))

    b, fn = cg.b, scope.function
    start = cg.int_value(loop.min, "int64")
    extent = cg.int_value(loop.extent, "int64")
    run_bb, done_bb = fn.append_basic_block("parallel.run"), fn.append_basic_block("parallel.end")
    b.cbranch(b.icmp_signed(">", extent, ir.Constant(I64, 0)), run_bb, done_bb)
    b.position_at_end(run_bb)
    closure = scope.alloca(closure_type, 8, name=f"closure{k}")
    slot = scope.alloca(I32, 4, name=f"error{k}")
    b.store(ir.Constant(I32, 0), slot)
    values = [slot, start, extent] + [scope.value_of(v) for v in captures]
    for index, value in enumerate(values):
        b.store(value, b.gep(closure, [ir.Constant(I32, 0), ir.Constant(I32, index)]))
    threads = ir.Constant(I64, cg.target.num_threads)
    chunk = dict(loop.annotations).get("parallel_chunk")
    if chunk is not None:
        # dynamic schedule: tasks of about `chunk` iterations, handed out by the pool's counter
        size = ir.Constant(I64, int(chunk))
        num_tasks = b.sdiv(b.add(extent, ir.Constant(I64, int(chunk) - 1)), size)
    else:  # static schedule: one contiguous chunk per thread
        num_tasks = b.select(b.icmp_signed("<", extent, threads), extent, threads)
    launch = b.load(_launch_pointer(cg))
    b.call(launch, [task, b.bitcast(closure, I8_PTR), num_tasks])
    code = b.load(slot)
    cg.check(b.icmp_signed("==", code, ir.Constant(I32, 0)), code, "parallel.ok")
    b.branch(done_bb)
    b.position_at_end(done_bb)


def _captured_vars(cg, loop: S.For) -> list:
    """Free variables of the loop body (buffer bases included), minus the loop variable."""
    found = {v.uid: v for v in free_vars(loop.body)}  # allocation sizes included
    allocated = set()
    post_order_visit(loop.body, lambda n: allocated.add(n.buffer.data.uid)
                     if isinstance(n, S.Allocate) else None)
    return [v for uid, v in found.items() if uid != loop.loop_var.uid and uid not in allocated]


def _capture_type(scope, var) -> ir.Type:
    return I8_PTR if var.dtype == "handle" else scope.value_of(var).type


def _emit_chunk_function(cg, loop: S.For, captures: list, name: str) -> ir.Function:
    begin, end = E.Var("begin", "int64"), E.Var("end", "int64")
    dtype = loop.loop_var.dtype
    chunk = S.For(loop.loop_var, E.Cast(begin, dtype) if dtype != "int64" else begin,
                  E.Cast(E.Sub(end, begin, "int64"), dtype) if dtype != "int64"
                  else E.Sub(end, begin, "int64"),
                  S.SERIAL, loop.body, annotations=loop.annotations)
    scope = cg.scope
    aligns = {v.uid: scope.data[v.uid].align for v in captures if v.dtype == "handle"}
    non_negative = {v.uid for v in captures if v.uid in scope.non_negative}
    if cg.known_non_negative(loop.min):  # the counter too: its int64 -> int32 cast hides it
        non_negative |= {begin.uid, end.uid, loop.loop_var.uid}
    multiples = {v.uid: scope.multiples[v.uid] for v in captures if v.uid in scope.multiples}
    return cg.emit_function(name, [begin, end] + captures, aligns, chunk, in_parallel=True,
                            non_negative=non_negative, multiples=multiples)


def _emit_task_function(cg, name: str, impl: ir.Function, closure_type, n_captures: int):
    fn = ir.Function(cg.module, TASK_TYPE, name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    task_id, num_tasks, raw = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    closure = b.bitcast(raw, closure_type.as_pointer())
    fields = [b.load(b.gep(closure, [ir.Constant(I32, 0), ir.Constant(I32, i)]))
              for i in range(3 + n_captures)]
    slot, start, extent = fields[:3]
    # Task t runs [start + t*extent/n, start + (t+1)*extent/n): contiguous, sizes within one.
    first = b.sdiv(b.mul(task_id, extent), num_tasks)
    last = b.sdiv(b.mul(b.add(task_id, ir.Constant(I64, 1)), extent), num_tasks)
    begin, end = b.add(start, first), b.add(start, last)
    with b.if_then(b.icmp_signed("<", begin, end)):
        code = b.call(impl, [begin, end] + fields[3:])
        with b.if_then(b.icmp_signed("!=", code, ir.Constant(I32, 0))):
            b.store_atomic(code, slot, "monotonic", 4)
    b.ret_void()
    return fn


def _launch_pointer(cg) -> ir.GlobalVariable:
    """The module's ``tl_parallel_launch`` pointer, made on first use with a serial default."""
    if cg.launch_global is None:
        serial = _emit_serial_launch(cg, f"{cg.symbol}__serial_launch")
        gv = ir.GlobalVariable(cg.module, LAUNCH_TYPE.as_pointer(), f"{cg.symbol}__parallel_launch")
        gv.initializer = serial
        gv.align = 8
        cg.launch_global = gv  # external linkage: LLVM must not assume it keeps this value
    return cg.launch_global


def _emit_serial_launch(cg, name: str) -> ir.Function:
    fn = ir.Function(cg.module, LAUNCH_TYPE, name)
    fn.linkage = "internal"
    task, closure, num_tasks = fn.args
    entry = fn.append_basic_block("entry")
    loop, done = fn.append_basic_block("loop"), fn.append_basic_block("done")
    b = ir.IRBuilder(entry)
    b.cbranch(b.icmp_signed(">", num_tasks, ir.Constant(I64, 0)), loop, done)
    b.position_at_end(loop)
    index = b.phi(I64)
    index.add_incoming(ir.Constant(I64, 0), entry)
    b.call(task, [index, num_tasks, closure])
    following = b.add(index, ir.Constant(I64, 1))
    index.add_incoming(following, loop)
    b.cbranch(b.icmp_signed("<", following, num_tasks), loop, done)
    b.position_at_end(done)
    b.ret_void()
    return fn
