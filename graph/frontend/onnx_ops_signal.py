"""ONNX signal and sequence converters (registered on import): DFT and STFT as matrix products,
ReverseSequence as a gather, Col2Im as a sum of shifted column blocks, MaxUnpool as a scatter.

A DFT along one axis is a linear map of the (real or complex) signal on that axis, so it is
one ``matmul`` with a constant real matrix: the signal's samples and parts (1: real, 2: real
and imaginary) on one side, the transform's on the other. The matrix is the transform of each
unit signal, so zero padding or truncation to ``dft_length``, ``onesided`` and ``inverse``
(the inverse of a one-sided spectrum is the real signal, as NumPy's ``irfft``) are all in it.
"""
from __future__ import annotations

import numpy as np

from .onnx import converter
from .onnx_ops_more import _axis, _const, _opt, _unsupported


def _transform(signal: np.ndarray, length: int, inverse: bool, onesided: bool) -> np.ndarray:
    """The ONNX DFT of complex ``signal`` along axis 0, as [k, 2] or ([k, 1] for an inverse
    one-sided transform) real parts."""
    if inverse and onesided:
        return np.fft.irfft(signal, n=length, axis=0)[:, None]
    out = np.fft.ifft(signal, n=length, axis=0) if inverse else \
        np.fft.fft(signal, n=length, axis=0)
    if onesided:
        out = out[:length // 2 + 1]
    return np.stack([out.real, out.imag], axis=-1)


def dft_matrix(n: int, parts: int, length: int, inverse: bool, onesided: bool) -> np.ndarray:
    """The real matrix [n * parts, k * outs] of the DFT of an n-sample signal."""
    rows = []
    for i in range(n):
        for p in range(parts):
            unit = np.zeros(n, np.complex128)
            unit[i] = 1.0 if p == 0 else 1.0j
            rows.append(_transform(unit, length, inverse, onesided).reshape(-1))
    return np.array(rows)


@converter("DFT")
def _dft(node, inputs, attrs):
    x = inputs[0]
    nd = x.type.ndim
    if node.opset >= 20:
        axis = -2
        if _opt(inputs, 2) is not None:
            axis = int(np.ravel(node.const_value(inputs[2], "axis"))[0])
    else:
        axis = int(attrs.get("axis", 1))
    axis = _axis(axis, nd)
    if axis == nd - 1:
        raise _unsupported(node, "the DFT axis cannot be the last (real / imaginary) axis")
    inverse, onesided = bool(attrs.get("inverse", 0)), bool(attrs.get("onesided", 0))
    n, parts = x.type.shape[axis], x.type.shape[-1]
    if parts not in (1, 2):
        raise _unsupported(node, f"the last axis must hold 1 or 2 parts, not {parts}")
    if _opt(inputs, 1) is not None:
        length = int(np.ravel(node.const_value(inputs[1], "dft_length"))[0])
    else:
        length = 2 * (n - 1) if inverse and onesided else n
    matrix = dft_matrix(n, parts, length, inverse, onesided)
    outs = 1 if inverse and onesided else 2
    k = matrix.shape[1] // outs
    dtype = x.type.dtype if x.type.dtype in ("float32", "float64") else "float32"
    v = x if x.type.dtype == dtype else node.call("cast", (x,), dtype=dtype)
    others = [d for d in range(nd - 1) if d != axis]
    perm = others + [axis, nd - 1]
    v = node.call("transpose", (v,), axes=tuple(perm))
    lead = [x.type.shape[d] for d in others]
    v = node.call("reshape", (v,), newshape=(int(np.prod(lead, dtype=np.int64)), n * parts))
    v = node.call("matmul", (v, _const(node, matrix, dtype)))
    v = node.call("reshape", (v,), newshape=(*lead, k, outs))
    back = [0] * nd  # where each output axis comes from in the permuted order
    for pos, d in enumerate(perm):
        back[d] = pos
    v = node.call("transpose", (v,), axes=tuple(back))
    return v if dtype == x.type.dtype else node.call("cast", (v,), dtype=x.type.dtype)


__all__ = ["dft_matrix"]


# -- ReverseSequence ----------------------------------------------------------------------------

@converter("ReverseSequence")
def _reverse_sequence(node, inputs, attrs):
    """out[b, t] = x[b, len[b] - 1 - t] for t < len[b], else x[b, t]: a gather along time."""
    x, lens = inputs[0], inputs[1]
    nd = x.type.ndim
    batch = _axis(int(attrs.get("batch_axis", 1)), nd)
    time = _axis(int(attrs.get("time_axis", 0)), nd)
    steps = x.type.shape[time]
    t_shape, b_shape = [1] * nd, [1] * nd
    t_shape[time], b_shape[batch] = steps, x.type.shape[batch]
    t = _const(node, np.arange(steps).reshape(t_shape), np.int64)
    n = node.call("reshape", (node.call("cast", (lens,), dtype="int64"),),
                  newshape=tuple(b_shape))
    one = _const(node, 1, np.int64)
    flipped = node.call("subtract", (node.call("subtract", (n, one)), t))
    index = node.call("where", (node.call("less", (t, n)), flipped, t))
    index = node.call("broadcast_to", (index,), shape=tuple(x.type.shape))
    return node.call("gather_elements", (x, index), axis=time)


@converter("STFT")
def _stft(node, inputs, attrs):
    """Frames gathered from the signal, then one matmul with the windowed DFT matrix."""
    x, step = inputs[0], int(np.ravel(node.const_value(inputs[1], "frame_step"))[0])
    window = _opt(inputs, 2)
    window = None if window is None else np.asarray(node.const_value(window, "window"))
    if _opt(inputs, 3) is not None:
        length = int(np.ravel(node.const_value(inputs[3], "frame_length"))[0])
    else:
        length = x.type.shape[-2] if window is None else window.shape[0]
    if window is None:
        window = np.ones(length)
    onesided = bool(attrs.get("onesided", 1))
    batch, samples, parts = x.type.shape
    frames = 1 + (samples - length) // step
    if frames < 1 or window.shape[0] != length:
        raise _unsupported(node, "the window / frame length does not fit the signal")
    picks = np.arange(frames)[:, None] * step + np.arange(length)[None, :]
    v = node.call("gather", (x, _const(node, picks, np.int64)), axis=1)
    v = node.call("reshape", (v,), newshape=(batch * frames, length * parts))
    matrix = dft_matrix(length, parts, length, False, onesided)
    matrix = matrix * np.repeat(window.astype(np.float64), parts)[:, None]
    dtype = x.type.dtype if x.type.dtype in ("float32", "float64") else "float32"
    if v.type.dtype != dtype:
        v = node.call("cast", (v,), dtype=dtype)
    v = node.call("matmul", (v, _const(node, matrix, dtype)))
    v = node.call("reshape", (v,), newshape=(batch, frames, matrix.shape[1] // 2, 2))
    return v if dtype == x.type.dtype else node.call("cast", (v,), dtype=x.type.dtype)


# -- Col2Im -----------------------------------------------------------------------------------

@converter("Col2Im")
def _col2im(node, inputs, attrs):
    """The sum, over kernel offsets, of each offset's column block spread out by the strides
    (zeros between) and shifted into place; then the padding cropped off."""
    x = inputs[0]
    image = [int(v) for v in np.ravel(node.const_value(inputs[1], "image_shape"))]
    block = [int(v) for v in np.ravel(node.const_value(inputs[2], "block_shape"))]
    k = len(image)
    dil = list(attrs.get("dilations", [1] * k))
    strides = list(attrs.get("strides", [1] * k))
    pads = list(attrs.get("pads", [0] * 2 * k))
    n, ckk, length = x.type.shape
    kk = int(np.prod(block))
    if ckk % kk:
        raise _unsupported(node, f"{ckk} channels do not divide into blocks of {kk}")
    c = ckk // kk
    padded = [image[d] + pads[d] + pads[k + d] for d in range(k)]
    counts = [(padded[d] - (dil[d] * (block[d] - 1) + 1)) // strides[d] + 1 for d in range(k)]
    if int(np.prod(counts)) != length:
        raise _unsupported(node, f"{length} columns do not fit image {image} / block {block}")
    cols = node.call("reshape", (x,), newshape=(n, c, kk, *counts))
    total = None
    for offset, position in enumerate(np.ndindex(*block)):
        begins = [0, 0, offset] + [0] * k
        part = node.call("slice", (cols,), begins=tuple(begins), steps=(1,) * (k + 3),
                         shape=(n, c, 1, *counts))
        # spread out by the strides: [.., m, 1, ..] padded to [.., m, s, ..] then flattened
        spread = []
        for d in range(k):
            spread += [counts[d], 1]
        part = node.call("reshape", (part,), newshape=(n, c, *spread))
        after = [0, 0]
        for d in range(k):
            after += [0, strides[d] - 1]
        part = node.call("pad", (part,), pads=(0,) * (2 + 2 * k) + tuple(after),
                         mode="constant", value=0.0)
        part = node.call("reshape", (part,), newshape=(n, c, *[m * s for m, s in
                                                                zip(counts, strides)]))
        # shift to the offset's place in the padded image (cropping the stride's tail)
        lo = [position[d] * dil[d] for d in range(k)]
        hi = [padded[d] - lo[d] - counts[d] * strides[d] for d in range(k)]
        part = node.call("pad", (part,), pads=(0, 0, *lo, 0, 0, *hi), mode="constant",
                         value=0.0)
        total = part if total is None else node.call("add", (total, part))
    crop = tuple([0, 0] + [-p for p in pads[:k]] + [0, 0] + [-p for p in pads[k:]])
    if any(crop):
        total = node.call("pad", (total,), pads=crop, mode="constant", value=0.0)
    return total


# -- MaxUnpool --------------------------------------------------------------------------------

@converter("MaxUnpool")
def _max_unpool(node, inputs, attrs):
    """Each value written at its flat index (MaxPool's ``Indices``) into a zero tensor."""
    x, index = inputs[0], inputs[1]
    spatial = x.type.ndim - 2
    kernel = list(attrs["kernel_shape"])
    strides = list(attrs.get("strides", [1] * spatial))
    pads = list(attrs.get("pads", [0] * 2 * spatial))
    shape = tuple(x.type.shape[:2]) + tuple(
        (x.type.shape[2 + d] - 1) * strides[d] + kernel[d] - pads[d] - pads[spatial + d]
        for d in range(spatial))
    total = int(np.prod(shape, dtype=np.int64))
    zeros = _const(node, np.zeros(total), x.type.dtype)
    flat = (x.type.size,)
    out = node.call("scatter_elements", (zeros, node.call("reshape", (index,), newshape=flat),
                                         node.call("reshape", (x,), newshape=flat)),
                    axis=0, reduction="none")
    out = node.call("reshape", (out,), newshape=shape)
    if _opt(inputs, 2) is None:
        return out
    # a larger output_shape: the unpooled tensor at its start, zeros after (as the reference)
    want = tuple(int(v) for v in np.ravel(node.const_value(inputs[2], "output_shape")))
    extra = tuple(w - s for w, s in zip(want, shape))
    if len(want) != len(shape) or min(extra) < 0:
        raise _unsupported(node, f"output_shape {want} is smaller than the unpooled {shape}")
    return node.call("pad", (out,), pads=(0,) * len(shape) + extra, mode="constant",
                     value=0.0 if x.type.dtype.startswith("float") else 0)
