"""The C ABI of a compiled kernel, and its signature for the runtime.

Every module exports, for a kernel named ``f``:

* ``int32_t f(void** args, int64_t* shape_values)``: ``args[i]`` is the data pointer of the
  i-th buffer parameter (for a scalar parameter: a pointer to its value, in its dtype);
  ``shape_values[j]`` is the value of the j-th symbolic extent, in order of first appearance in
  the parameters' shapes (then strides). Returns 0, or an error code ``k`` whose message is
  ``f__error_message(k)``.
* ``int32_t f__bench(void** args, int64_t* shape_values, int64_t number)``: calls ``f``
  ``number`` times (for timing without Python in the loop); the first error code, or 0.
* ``const char* f__error_message(int32_t code)``: NULL for an unknown code.

Buffers must not overlap an output (they are ``noalias``) and need only element alignment.
"""
from __future__ import annotations

from llvmlite import ir

from tensorlang import dtype as dt
from tensorlang import expr as E
from tensorlang.errors import UnsupportedOpError, UserError
from tensorlang.ir.buffer import Buffer
from tensorlang.ir.functor import free_vars
from tensorlang.runtime.module import ParamSpec, Signature

from .types import I32, I64, I8_PTR, llvm_type

ENTRY_TYPE = ir.FunctionType(I32, [I8_PTR.as_pointer(), I64.as_pointer()])
BENCH_TYPE = ir.FunctionType(I32, [I8_PTR.as_pointer(), I64.as_pointer(), I64])

_DIM_OPS = {E.Add: "add", E.Sub: "sub", E.Mul: "mul", E.FloorDiv: "floordiv",
            E.FloorMod: "floormod", E.Div: "div", E.Mod: "mod", E.Min: "min", E.Max: "max"}


def check_params(func) -> tuple[list, list]:
    """The parameters and the symbolic extents (in ABI order) of ``func``; checks both."""
    params = list(func.params)
    shape_vars: dict[int, E.Var] = {}
    for p in params:
        if isinstance(p, E.Var):
            if p.dtype == "handle":
                raise UnsupportedOpError(f"parameter {p.name!r} of {func.name!r} is a raw handle; "
                                         "pass buffers instead")
            llvm_type(p.dtype)  # refuses unsupported dtypes by name
            continue
        if not isinstance(p, Buffer):
            raise UserError(f"parameter {p!r} of {func.name!r} is neither a Buffer nor a Var")
        llvm_type(p.dtype)
        for dim in tuple(p.shape) + tuple(p.strides):
            for v in _vars_in(dim):
                shape_vars.setdefault(v.uid, v)
    scalar_ids = {p.uid for p in params if isinstance(p, E.Var)}
    bound = {p.data.uid for p in params if isinstance(p, Buffer)} | scalar_ids | set(shape_vars)
    for v in free_vars(func.body):
        if v.uid not in bound:
            raise UserError(f"variable {v.name!r} is used in {func.name!r} but is neither a "
                            "parameter nor a symbolic extent of a parameter's shape")
    for v in shape_vars.values():
        if not dt.is_int(v.dtype):
            raise UserError(f"symbolic extent {v.name!r} must be an integer, not {v.dtype}")
    return params, list(shape_vars.values())


def _vars_in(e) -> list:
    if isinstance(e, E.Var):
        return [e]
    if isinstance(e, E.BinaryOp):
        return _vars_in(e.a) + _vars_in(e.b)
    if isinstance(e, E.Cast):
        return _vars_in(e.value)
    return []


def _dim_spec(e, index_of: dict):
    """A shape expression as JSON-able data: int, ["var", j] or [op, a, b]."""
    if isinstance(e, E.IntImm):
        return e.value
    if isinstance(e, E.Var):
        return ["var", index_of[e.uid]]
    if isinstance(e, E.Cast):
        return _dim_spec(e.value, index_of)
    if type(e) in _DIM_OPS:
        return [_DIM_OPS[type(e)], _dim_spec(e.a, index_of), _dim_spec(e.b, index_of)]
    raise UnsupportedOpError(f"shape expression {type(e).__name__} in a parameter's shape is not "
                             "supported; use integers and symbolic variables")


def signature_of(func, symbol: str, params: list, shape_vars: list, errors: list,
                 target: str) -> Signature:
    """The runtime's description of how ``func`` is called."""
    index_of = {v.uid: j for j, v in enumerate(shape_vars)}
    specs = []
    for p in params:
        if isinstance(p, E.Var):
            specs.append(ParamSpec(p.name, "scalar", p.dtype))
        else:
            specs.append(ParamSpec(p.data.name if not p.name else p.name, "buffer", p.dtype,
                                   tuple(_dim_spec(d, index_of) for d in p.shape),
                                   tuple(_dim_spec(s, index_of) for s in p.strides)))
    outputs = func.attr("output_indices")
    if outputs is None:
        buffers = [i for i, p in enumerate(params) if isinstance(p, Buffer)]
        outputs = buffers[-1:]
    return Signature(entry=symbol, params=tuple(specs),
                     shape_vars=tuple((v.name, v.dtype) for v in shape_vars),
                     outputs=tuple(int(i) for i in outputs), errors=tuple(errors), target=target)


def emit_entry_points(cg, kernel: ir.Function, params: list, shape_vars: list) -> None:
    """The exported wrapper, bench loop and error-message lookup of the kernel."""
    entry = _emit_wrapper(cg, kernel, params, shape_vars)
    _emit_bench(cg, entry)
    _emit_error_messages(cg)


def _emit_wrapper(cg, kernel: ir.Function, params: list, shape_vars: list) -> ir.Function:
    fn = ir.Function(cg.module, ENTRY_TYPE, cg.symbol)
    fn.attributes.add("nounwind")
    fn.attributes.add("noinline")  # keeps the bench loop honest: one real call per iteration
    args, shapes = fn.args
    args.name, shapes.name = "args", "shape_values"
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    values = []
    for i, p in enumerate(params):
        pointer = b.load(b.gep(args, [ir.Constant(I32, i)]), align=8)
        if isinstance(p, E.Var):
            memory = llvm_type(p.dtype) if p.dtype != "bool" else ir.IntType(8)
            scalar = b.load(b.bitcast(pointer, memory.as_pointer()))
            if p.dtype == "bool":
                scalar = b.icmp_unsigned("!=", scalar, ir.Constant(memory, 0))
            values.append(scalar)
        else:
            values.append(pointer)
    for j, v in enumerate(shape_vars):
        value = b.load(b.gep(shapes, [ir.Constant(I32, j)]), align=8)
        ty = llvm_type(v.dtype)
        values.append(b.trunc(value, ty) if ty.width < 64 else value)
    b.ret(b.call(kernel, values))
    return fn


def _emit_bench(cg, entry: ir.Function) -> None:
    fn = ir.Function(cg.module, BENCH_TYPE, f"{cg.symbol}__bench")
    args, shapes, number = fn.args
    first = fn.append_basic_block("entry")
    loop, done = fn.append_basic_block("loop"), fn.append_basic_block("done")
    b = ir.IRBuilder(first)
    b.cbranch(b.icmp_signed(">", number, ir.Constant(I64, 0)), loop, done)
    b.position_at_end(loop)
    index = b.phi(I64)
    index.add_incoming(ir.Constant(I64, 0), first)
    code = b.call(entry, [args, shapes])
    following = b.add(index, ir.Constant(I64, 1))
    index.add_incoming(following, loop)
    more = b.and_(b.icmp_signed("<", following, number),
                  b.icmp_signed("==", code, ir.Constant(I32, 0)))
    b.cbranch(more, loop, done)
    b.position_at_end(done)
    result = b.phi(I32)
    result.add_incoming(ir.Constant(I32, 0), first)
    result.add_incoming(code, loop)
    b.ret(result)


def _emit_error_messages(cg) -> None:
    fn = ir.Function(cg.module, ir.FunctionType(I8_PTR, [I32]), f"{cg.symbol}__error_message")
    (code,) = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    if not cg.errors:
        b.ret(ir.Constant(I8_PTR, None))
        return
    table_type = ir.ArrayType(I8_PTR, len(cg.errors))
    table = ir.GlobalVariable(cg.module, table_type, f"{cg.symbol}__errors")
    table.linkage, table.global_constant = "private", True
    table.initializer = ir.Constant(table_type, [cg.cstring(message) for _, message in cg.errors])
    in_range = b.and_(b.icmp_signed(">=", code, ir.Constant(I32, 1)),
                      b.icmp_signed("<=", code, ir.Constant(I32, len(cg.errors))))
    with b.if_then(in_range):
        slot = b.gep(table, [ir.Constant(I32, 0), b.sub(code, ir.Constant(I32, 1))])
        b.ret(b.load(slot))
    b.ret(ir.Constant(I8_PTR, None))
