"""The runtime: NDArray (CPU memory 64-byte aligned, or CUDA device memory), DLPack exchange,
dtype names, and the CUDA driver runtime (:mod:`tensorlang.runtime.cuda`, which imports
cuda-python only when first used).

``tl.nd`` is :mod:`tensorlang.runtime.ndarray`: ``tl.nd.array``, ``tl.nd.empty``,
``tl.nd.from_dlpack``.
"""

from . import cuda
from .dtypes import DTYPE_NAMES, dlpack_dtype, dtype_from_dlpack, dtype_name, itemsize, np_dtype
from .ndarray import ALIGNMENT, NDArray, array, empty, from_dlpack
from .threads import get_num_threads, set_num_threads


def load_module(path: str):
    """Load a kernel saved with ``export_library``."""
    from .module import load_module as _load
    return _load(path)

__all__ = [
    "ALIGNMENT",
    "DTYPE_NAMES",
    "NDArray",
    "array",
    "cuda",
    "dlpack_dtype",
    "dtype_from_dlpack",
    "dtype_name",
    "empty",
    "from_dlpack",
    "get_num_threads",
    "load_module",
    "set_num_threads",
    "itemsize",
    "np_dtype",
]
