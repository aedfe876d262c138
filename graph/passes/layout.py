"""The CPU layout pass for convolutions: channel-blocked (NCHWc) tensors between them.

A selected ``conv2d`` (float32, one group, constant weight) becomes ``conv2d_nchwc`` on a
blocked input ``[N, C/cb, H, W, cb]`` with its weight packed once, here, to ``[K/kb, C/cb, KH,
KW, cb, kb]``; its result stays blocked (``kb`` output channels innermost, so a tuned kernel
keeps them in vector registers). Elementwise and broadcast consumers (bias add, relu, residual
add, ...), max / average pooling and concatenation along the channels run on the blocked
tensors directly, constant operands re-laid out here; a consumer that needs NCHW (global
pooling, reshape, dense, a model output) gets one
``layout_from_nchwc``, and a blocked conv reading an NCHW tensor one ``layout_to_nchwc``: the
transforms sit only at the boundaries of the blocked regions, each made once per tensor. Where
a blocked and an NCHW tensor meet (a residual add, a concatenation), the op runs blocked only if
a blocked convolution reads its result (through more such ops); otherwise the blocked operand is
converted and the region ends there (ShuffleNet: its first conv is blocked and every later one
grouped, so a blocked residual stream would cost two transforms per unit).

Example::

    mod = convert_conv_layout(optimize(mod))                 # every eligible convolution
    mod = convert_conv_layout(mod, select=lambda conv: ...)  # only some
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from tensorlang.errors import UserError
from tensorlang.ops.conv import channel_block
from tensorlang.ops.winograd import winograd_weight

from ..ir import Call, Constant, Expr, Function, Module, TupleGetItem, Var, post_order
from ..ops import get_op
from ..ops.nchwc import pack_conv_weight

__all__ = ["convert_conv_layout", "conv_blocks", "eligible_conv", "winograd_conv"]

_POOLS = ("max_pool2d", "avg_pool2d")


def eligible_conv(call: Expr) -> bool:
    """Whether the pass can run ``call`` blocked: a float32 2-D ``conv2d`` of one group with a
    constant weight and a multiple of 4 output channels."""
    if not isinstance(call, Call) or call.op != "conv2d" or len(call.args) != 2:
        return False
    data, weight = call.args
    return (isinstance(weight, Constant) and call.attr("groups", 1) == 1
            and call.type.dtype == "float32" and data.type.ndim == 4
            and weight.type.ndim == 4 and weight.type.shape[0] % 4 == 0)


# Winograd F(4x4, 3x3) for the convolutions that ``winograd`` picks (graph/conv_layout.py
# times it against the direct kernel); below 8 x 8 outputs its 4x larger weight and padded
# tiles cost more than the multiplies it saves
WINOGRAD_TILE = 4
WINOGRAD_MIN_OUTPUT = 8
WINOGRAD_PRODUCTS = ("blas", "dsl")


def winograd_conv(call: Expr) -> bool:
    """Whether an eligible conv can run as Winograd ``F(4x4, 3x3)``: a 3 x 3 kernel, stride 1,
    no dilation and outputs of at least 8 x 8."""
    if not eligible_conv(call):
        return False
    kh, kw = call.args[1].type.shape[2:]
    oh, ow = call.type.shape[2:]
    return (kh, kw) == (3, 3) and tuple(call.attr("strides", (1, 1))) == (1, 1) and \
        tuple(call.attr("dilations", (1, 1))) == (1, 1) and \
        min(oh, ow) >= WINOGRAD_MIN_OUTPUT


def conv_blocks(call: Call, input_block: int | None) -> tuple[int, int]:
    """``(cb, kb)`` of an eligible conv: its input's block when the input is blocked already,
    else the largest of 16, 8, 4, 2, 1 dividing the channels; the same for the outputs."""
    channels, outputs = call.args[0].type.shape[1], call.args[1].type.shape[0]
    return (input_block or channel_block(channels)), channel_block(outputs)


def _blocked_constant(value: np.ndarray, block: int, channels: int) -> np.ndarray | None:
    """A constant operand of an NCHW broadcast op, laid out against the blocked tensor; None
    when it does not broadcast along the channel axis as a 4-d operand would."""
    if value.ndim == 0:
        return value
    if value.ndim > 4:
        return None
    v4 = value.reshape((1,) * (4 - value.ndim) + value.shape)
    a, c, h, w = v4.shape
    if c == 1:
        return np.ascontiguousarray(v4[..., None])
    if c != channels:
        return None
    return np.ascontiguousarray(v4.reshape(a, c // block, block, h, w).transpose(0, 1, 3, 4, 2))


def convert_conv_layout(mod: Module, select: Callable[[Call], bool] | None = None,
                        origin: dict | None = None,
                        winograd: Callable[[Call], "bool | str"] | None = None) -> Module:
    """``mod`` with the eligible convolutions that ``select`` accepts (default: all) run in the
    blocked layout; see the module docstring. The result computes the same numbers.
    ``origin``, when given, is filled with ``{id(new conv2d_nchwc call): original conv2d}``.
    Those of them that ``winograd`` accepts (default: none) and :func:`winograd_conv` allows
    become ``conv2d_winograd_nchwc``, their weight transformed here. ``winograd(conv)`` may
    name how the transformed products are computed: ``"blas"`` (one grouped sgemm call, what
    ``True`` means) or ``"dsl"`` (a DSL reduction, which the auto-scheduler tiles and tunes;
    its transforms keep fixed schedules)."""
    env: dict[int, tuple] = {}     # id(old node) -> (new node, block or None)
    plain_of: dict[int, Expr] = {}
    blocked_of: dict[tuple, Expr] = {}

    def plain(old: Expr) -> Expr:
        new, block = env[id(old)]
        if block is None:
            return new
        if id(old) not in plain_of:
            plain_of[id(old)] = Call("layout_from_nchwc", (new,), name=_name(old))
        return plain_of[id(old)]

    def blocked(old: Expr, block: int) -> Expr:
        new, have = env[id(old)]
        if have == block:
            return new
        key = (id(old), block)
        if key not in blocked_of:
            blocked_of[key] = Call("layout_to_nchwc", (plain(old),), {"block": block},
                                   name=_name(old))
        return blocked_of[key]

    order = post_order(mod.function.outputs)
    wanted = _feeds_blocked_conv(order, lambda c: eligible_conv(c) and
                                 (select is None or select(c)))
    for node in order:
        if isinstance(node, (Var, Constant)):
            env[id(node)] = (node, None)
        elif isinstance(node, TupleGetItem):
            env[id(node)] = (TupleGetItem(plain(node.tuple_value), node.index), None)
        elif eligible_conv(node) and (select is None or select(node)):
            data, weight = node.args
            cb, kb = conv_blocks(node, env[id(data)][1])
            product = winograd(node) if winograd is not None and winograd_conv(node) \
                else False
            if product:
                if product not in (True, *WINOGRAD_PRODUCTS):
                    raise UserError(f"convert_conv_layout: the Winograd product of conv "
                                    f"{node.name} must be one of {list(WINOGRAD_PRODUCTS)}, "
                                    f"got {product!r}")
                u = Constant(f"{weight.name}_winograd{WINOGRAD_TILE}",
                             winograd_weight(weight.value, WINOGRAD_TILE))
                attrs = {"tile": WINOGRAD_TILE, "pads": node.attr("pads", (0, 0, 0, 0)),
                         "block": kb, "product": "blas" if product is True else product}
                new = Call("conv2d_winograd_nchwc", (blocked(data, cb), u), attrs,
                           name=node.name)
            else:
                packed = Constant(f"{weight.name}_nchwc{cb}c{kb}",
                                  pack_conv_weight(weight.value, cb, kb))
                attrs = {k: v for k, v in node.attrs if k in ("strides", "pads", "dilations")}
                new = Call("conv2d_nchwc", (blocked(data, cb), packed), attrs, name=node.name)
            env[id(node)] = (new, kb)
            if origin is not None:
                origin[id(new)] = node
        else:
            env[id(node)] = _convert_call(node, env, plain, blocked, id(node) in wanted)
    outputs = tuple(plain(o) for o in mod.function.outputs)
    return Module(Function(mod.function.params, outputs), mod.input_names, mod.output_names,
                  specializer=mod.specializer)


def _feeds_blocked_conv(order: list, is_blocked_conv) -> set:
    """``id`` of each node whose value reaches the data input of a blocked convolution through
    elementwise, broadcast, pooling and concatenation ops only (``order``: post order)."""
    passes_on = ("elementwise", "broadcast")
    wanted: set = set()
    for node in reversed(order):  # each node's consumers before it
        if not isinstance(node, Call):
            continue
        if is_blocked_conv(node):
            targets = node.args[:1]
        elif id(node) in wanted and (node.op in _POOLS or node.op == "concat" or
                                     get_op(node.op).pattern in passes_on):
            targets = node.args
        else:
            continue
        wanted.update(id(a) for a in targets if isinstance(a, Call))
    return wanted


def _convert_call(node: Call, env: dict, plain, blocked, feeds_blocked: bool) -> tuple:
    """An elementwise / broadcast call with a blocked operand stays blocked when every other
    operand can follow (a constant, or a full-size tensor) and, if another operand is an NCHW
    tensor, a blocked convolution reads the result (``feeds_blocked``); anything else reads
    NCHW."""
    blocks = [env[id(a)][1] for a in node.args]
    mixed = any(blocks) and any(not b and not isinstance(a, Constant)
                                for a, b in zip(node.args, blocks))
    if mixed and not feeds_blocked:
        blocks = [None] * len(blocks)
    pattern = get_op(node.op).pattern
    out = node.type
    if node.op in _POOLS and blocks[0] and node.attr("layout", "NCHW") == "NCHW":
        attrs = {**dict(node.attrs), "layout": "NCHWc"}
        return Call(node.op, (env[id(node.args[0])][0],), attrs, name=node.name), blocks[0]
    if node.op == "concat" and any(blocks) and out.ndim == 4 and \
            node.attr("axis", 0) in (1, -3):
        # along the channels: the blocked parts, joined along the outer channel axis
        block = next(b for b in blocks if b)
        if all(a.type.shape[1] % block == 0 for a in node.args):
            args = tuple(blocked(a, block) for a in node.args)
            return Call("concat", args, {"axis": 1}, name=node.name), block
    if pattern in ("elementwise", "broadcast") and not isinstance(out, tuple) \
            and out.ndim == 4 and any(blocks):
        block = next((b for a, b in zip(node.args, blocks) if b and a.type.shape == out.shape),
                     None)
        args = []
        for a, b in zip(node.args, blocks):
            if block is None:
                break
            if b == block:
                args.append(env[id(a)][0])
            elif isinstance(a, Constant):
                value = _blocked_constant(a.value, block, out.shape[1])
                if value is None:
                    break
                args.append(a if value is a.value else Constant(f"{a.name}_nchwc", value))
            elif a.type.shape == out.shape:
                args.append(blocked(a, block))
            else:
                break
        else:
            return Call(node.op, tuple(args), node.attrs, name=node.name), block
    args = tuple(plain(a) for a in node.args)
    if all(x is y for x, y in zip(args, node.args)):
        return node, None
    return Call(node.op, args, node.attrs, name=node.name), None


def _name(node: Expr) -> str:
    return getattr(node, "name", "") or ""
