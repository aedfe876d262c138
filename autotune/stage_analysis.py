"""What a stage's computation looks like, for the sketch rules (``autotune/sketch.py``,
``autotune/sketch_gpu.py``): elementwise or a reduction with reuse, a layout stage (one load,
perhaps guarded) and how it reads its input, the input worth packing, the register tile's row
axis, and how a consumer's loops line up with its producer's.

Example::

    _carrier_map(out.op, conv.op)   # [(0, None, None), (1, 16, "outer"), ..., (1, 16, "inner")]
"""
from __future__ import annotations

from tensorlang.errors import UserError
from tensorlang.expr import (Add, Call, FloorDiv, FloorMod, IntImm, ProducerLoad, Select, Sub,
                             Var)
from tensorlang.tensor import ComputeOp, visit_body


def _extent(iv) -> int:
    ext = iv.dom.extent
    if not isinstance(ext, IntImm):
        raise UserError(f"sketch generation needs constant extents; axis {iv.var.name} has "
                        f"extent {ext}")
    return ext.value


def _is_elementwise(op) -> bool:
    return isinstance(op, ComputeOp) and not op.reduce_axis and op.num_outputs == 1


def _has_reuse(op) -> bool:
    """Some input is read with indices that skip a spatial axis (so tiling reuses it)."""
    axes = {iv.var for iv in op.axis if _extent(iv) > 1}
    found = []

    def visit(node):
        if isinstance(node, ProducerLoad):
            used = set()

            def collect(n):
                if isinstance(n, Var):
                    used.add(n)
            for idx in node.indices:
                visit_body([idx], collect)
            if not axes <= used:
                found.append(node)
    visit_body(op.body, visit)
    return bool(found)


def _packable_input(op, row: int):
    """The input of a tiled reduction worth copying into a contiguous panel ("packing"): read
    with plain variables, the last spatial axis in its last index, a reduction variable in an
    earlier index (so its rows are far apart in memory) and not the row axis of the register
    tile (so one panel serves every row tile). B of ``A @ B`` is the example. None if none."""
    spatial = [iv.var for iv in op.axis]
    reduce_vars = {iv.var for iv in op.reduce_axis}
    row_var = spatial[row] if 0 <= row < len(spatial) else None
    loads = []
    visit_body(op.body, lambda n: loads.append(n) if isinstance(n, ProducerLoad) else None)
    for load in loads:
        idx = list(load.indices)
        if not idx or not all(isinstance(e, Var) for e in idx):
            continue
        if idx[-1] is not spatial[-1] or any(e is row_var for e in idx):
            continue
        if any(e in reduce_vars for e in idx[:-1]):
            return load.producer
    return None


def _panel_in_place(op, producer, width: int) -> bool:
    """Whether the panel of ``producer`` that one column tile of ``op`` reads (``width``
    elements of the last axis) is already contiguous in memory: the spatial indices come
    before every reduction index and the last index, whose extent is at most ``width``, is the
    last axis. A pre-blocked weight ``w[fo, ci_o, ky, kx, ci_i, fi]`` is one; ``B[k, n]`` of a
    wide matmul is not (its rows are ``n`` apart). Copying such a panel is pure overhead."""
    spatial = {iv.var for iv in op.axis}
    reduce_vars = {iv.var for iv in op.reduce_axis}
    loads = []
    visit_body(op.body, lambda n: loads.append(n)
               if isinstance(n, ProducerLoad) and n.producer is producer else None)
    for load in loads:
        idx = list(load.indices)
        first = next((d for d, e in enumerate(idx) if e in reduce_vars), None)
        if first is None or int(producer.shape[-1]) > width:
            return False
        if any(e in spatial for e in idx[first:-1]):
            return False
    return bool(loads)


def _lanes_along_rows(op) -> bool:
    """Whether vectors along the last spatial axis read along rows: no load uses that axis
    in an index other than its last, and some load uses it there (pooling's
    ``x[..., 2 * ox + kx]``, a sum over channels ``x[n, c, h, w]``). A row reduction
    ``x[i, k]`` summed over ``k`` is not: its lanes would come from different rows."""
    if not op.axis:
        return False
    last = op.axis[-1].var
    loads = []
    visit_body(op.body, lambda n: loads.append(n) if isinstance(n, ProducerLoad) else None)
    used = False
    for load in loads:
        idx = list(load.indices)
        if any(last in _vars_of([e]) for e in idx[:-1]):
            return False
        used = used or bool(idx) and last in _vars_of([idx[-1]])
    return used


def _vars_of(exprs) -> set:
    used: set = set()
    visit_body(list(exprs), lambda n: used.add(n) if isinstance(n, Var) else None)
    return used


def _is_reindex(op) -> bool:
    """A stage that only moves elements (a pack or transpose: its body is one plain load)."""
    return _is_elementwise(op) and len(op.body) == 1 and isinstance(op.body[0], ProducerLoad)


def _is_guarded(op) -> bool:
    found = []
    visit_body(op.body, lambda n: found.append(n) if isinstance(n, (Call, Select)) and
               (isinstance(n, Select) or n.op == "if_then_else") else None)
    return bool(found)


def _single_load(op):
    """The one tensor load of a stage that only moves elements (a pack, a transpose, a
    zero-padding copy: one load, perhaps under a guard), else None."""
    if not _is_elementwise(op):
        return None
    loads = []
    visit_body(op.body, lambda n: loads.append(n) if isinstance(n, ProducerLoad) else None)
    return loads[0] if len(loads) == 1 else None


def _unblocked_axes(op) -> dict:
    """``{axis position: c}`` for each output axis (not the last) of a layout stage that its
    input reads as ``a % c``: a channel-blocked layout read back into a plain one."""
    load = _single_load(op)
    if load is None:
        return {}
    position = {iv.var: i for i, iv in enumerate(op.axis[:-1])}
    found = {}

    def visit(n):
        if isinstance(n, FloorMod) and isinstance(n.a, Var) and isinstance(n.b, IntImm) \
                and n.a in position and n.b.value > 1 \
                and _extent(op.axis[position[n.a]]) % n.b.value == 0:
            found[position[n.a]] = n.b.value
    visit_body(list(load.indices), visit)
    return found


def _strided_last_axis(op) -> bool:
    """A layout stage whose last axis is not the input's last index: its vectors would be
    gathered lane by lane, slower than plain loops."""
    load = _single_load(op)
    if load is None or not op.axis or not load.indices:
        return False
    return load.indices[-1] is not op.axis[-1].var and \
        not (isinstance(load.indices[-1], (Add, Sub))
             and op.axis[-1].var in (load.indices[-1].a, load.indices[-1].b))


def _rows_fuse_contiguously(op) -> bool:
    """Whether fusing the last two axes of an elementwise stage keeps every load a contiguous
    or a uniform vector: each load indexes its tensor's last two dims with exactly those two
    axes (and the tensor has their extents), or uses neither of them (a per-channel bias)."""
    if len(op.axis) < 2 or not _is_elementwise(op):
        return False
    row, col = op.axis[-2], op.axis[-1]
    extents = (_extent(row), _extent(col))
    loads = []
    visit_body(op.body, lambda n: loads.append(n) if isinstance(n, ProducerLoad) else None)
    for load in loads:
        indices = list(load.indices)
        if len(indices) >= 2 and indices[-2] is row.var and indices[-1] is col.var:
            shape = load.producer.shape[-2:]
            if all(isinstance(d, IntImm) for d in shape) and \
                    tuple(d.value for d in shape) == extents:
                continue
            return False
        used = []
        visit_body(indices, lambda n: used.append(n) if n is row.var or n is col.var else None)
        if used:
            return False
    return True


def _points(axes) -> int:
    total = 1
    for iv in axes:
        total *= _extent(iv)
    return total


def _row_axis(op) -> int:
    """The spatial axis (not the last) for the rows of the register tile: the outermost one
    that an input does not depend on (each loaded vector then feeds a row of FMAs, like the
    rows of A in a matmul); else the one before the last."""
    ndim = len(op.axis)
    loads = []
    visit_body(op.body, lambda n: loads.append(n) if isinstance(n, ProducerLoad) else None)
    # the vector operand: the input indexed by the last axis; its vectors are reused across
    # the rows, so the rows are the innermost axis it does not depend on (output columns of a
    # blocked conv, rows of A in a matmul)
    last = op.axis[-1].var if op.axis else None
    vector_loads = [ld for ld in loads if last in _vars_of(ld.indices)]
    if vector_loads and len(vector_loads) < len(loads):
        for d in range(ndim - 2, -1, -1):
            iv = op.axis[d]
            if _extent(iv) > 1 and all(iv.var not in _vars_of(ld.indices)
                                       for ld in vector_loads):
                return d
    for d, iv in enumerate(op.axis[:-1]):
        if _extent(iv) == 1:
            continue
        for load in loads:
            used = []
            visit_body(list(load.indices), lambda n: used.append(n) if isinstance(n, Var)
                       else None)
            if iv.var not in used:
                return d
    return ndim - 2


def _carrier_map(consumer_op, producer_op) -> list | None:
    """How the loops of a consumer that only reads ``producer_op`` back in another layout walk
    the producer's axes: for each producer axis, ``(consumer axis position, c, part)``, where
    ``part`` is None (the axis itself), ``"outer"`` (read as ``a // c``) or ``"inner"``
    (``a % c``). None unless the two line up one to one (a blocked result unpacked, as
    ``conv2d_nchw[b, f, y, x] = blocked[b, f // 16, y, x, f % 16]``)."""
    load = _single_load(consumer_op)
    if load is None or load.producer.op is not producer_op or \
            len(load.indices) != len(producer_op.axis):
        return None
    position = {iv.var: i for i, iv in enumerate(consumer_op.axis)}
    mapping, parts = [], {}
    for index, piv in zip(load.indices, producer_op.axis):
        if isinstance(index, Var) and index in position:
            pos, c, part, ext = position[index], None, None, _extent(piv)
            want = _extent(consumer_op.axis[pos])
        elif isinstance(index, (FloorDiv, FloorMod)) and isinstance(index.a, Var) and \
                index.a in position and isinstance(index.b, IntImm) and index.b.value > 1:
            pos, c = position[index.a], index.b.value
            total = _extent(consumer_op.axis[pos])
            if total % c:
                return None
            part = "outer" if isinstance(index, FloorDiv) else "inner"
            want, ext = (total // c if part == "outer" else c), _extent(piv)
        else:
            return None
        if want != ext:
            return None
        parts.setdefault(pos, []).append((part, c))
        mapping.append((pos, c, part))
    for pos in range(len(consumer_op.axis)):  # each axis: whole once, or both its parts
        used = parts.get(pos, [])
        whole = used == [(None, None)]
        split = len(used) == 2 and {u[0] for u in used} == {"outer", "inner"} and \
            used[0][1] == used[1][1]
        if not (whole or split):
            return None
    return mapping


def _fusible_consumer(sch, stage, inlined):
    """The single elementwise consumer (same shape) that can carry ``stage``'s tiled loops;
    or the single consumer that reads it back in another layout (``_carrier_map``)."""
    if stage.is_output:
        return None
    c = stage
    while True:  # through inlined elementwise stages (dense -> bias -> relu)
        consumers = sch.consumers_of(c)
        if len(consumers) != 1 or not _is_elementwise(consumers[0].op):
            return None
        c = consumers[0]
        if c not in inlined:
            break
    if [_extent(iv) for iv in c.op.axis] != [_extent(iv) for iv in stage.op.axis] and \
            _carrier_map(c.op, stage.op) is None:
        return None
    return c
