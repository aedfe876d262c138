"""ONNX tensors of number formats the code generator has no type for.

bfloat16, the float8 variants, float4_e2m1fn and int4 / uint4 / int2 / uint2 are carried in
the graph in a wide *storage* dtype (``graph.ops.formats``): float32 for the float formats,
int8 / uint8 for the small integers. A model input of such a type becomes a storage-typed
input (callers pass the values widened: ``widen``), a Cast into the format is a
``round_to_format`` call, every other node whose ONNX result has the format gets its result
rounded to the format, and a model output of the format holds storage values that ``narrow``
turns back into the ONNX type exactly.

Example::

    x = widen(np.array([1.5], ml_dtypes.bfloat16))   # float32 array
    (y,) = lib.run(x)
    y = narrow(y, TensorProto.BFLOAT16)
"""
from __future__ import annotations

import numpy as np

from ..ops.formats import E8M0, FLOAT_FORMATS, INT_FORMATS, storage_dtype

#: format names (NumPy / ml_dtypes dtype names) carried in a storage dtype
FORMATS = set(FLOAT_FORMATS) | set(INT_FORMATS) | {E8M0}


def format_of(dtype) -> str | None:
    """The format name of a NumPy dtype (or dtype name) if it needs storage, else None."""
    name = str(np.dtype(dtype)) if not isinstance(dtype, str) else dtype
    return name if name in FORMATS else None


def storage(dtype) -> str:
    """The dtype name the graph carries ``dtype`` in (itself when it needs no storage)."""
    name = str(np.dtype(dtype)) if not isinstance(dtype, str) else dtype
    return storage_dtype(name) if name in FORMATS else name


def widen(array: np.ndarray) -> np.ndarray:
    """``array`` in its storage dtype (exact: every format value fits its storage dtype)."""
    array = np.asarray(array)
    fmt = format_of(array.dtype)
    return array.astype(storage(fmt)) if fmt else array


def narrow(array: np.ndarray, elem_type: int) -> np.ndarray:
    """A storage-typed ``array`` back in ONNX element type ``elem_type`` (exact for values
    that ``round_to_format`` produced)."""
    from onnx import helper
    want = np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    if format_of(want) and np.asarray(array).dtype != want:
        return np.asarray(array).astype(want)
    return array


def value_formats(model) -> dict:
    """``{value name: format}`` for the values of ``model``'s graph whose ONNX type (declared
    or found by ONNX shape inference) is a stored format."""
    import onnx
    from onnx import helper
    graph = model.graph
    infos = list(graph.input) + list(graph.output) + list(graph.value_info)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        infos += list(inferred.graph.value_info) + list(inferred.graph.output)
    except Exception:  # noqa: BLE001 - inference is best effort; declared types still count
        pass
    out = {}
    for info in infos:
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
            try:
                dtype = helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)
            except (KeyError, ValueError, TypeError):
                continue
            fmt = format_of(dtype)
            if fmt:
                out[info.name] = fmt
    for init in graph.initializer:
        try:
            fmt = format_of(helper.tensor_dtype_to_np_dtype(init.data_type))
        except (KeyError, ValueError, TypeError):
            continue
        if fmt:
            out[init.name] = fmt
    return out


__all__ = ["FORMATS", "format_of", "storage", "widen", "narrow", "value_formats"]
