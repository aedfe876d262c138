"""Whole models: import (``from_onnx``), the graph IR and its operators, build and run.

Example::

    import graph
    mod = graph.from_onnx("model.onnx", shape={"input": (1, 3, 224, 224)})
    lib = graph.build(mod, target="llvm", database=None)
    (probs,) = lib.run(image)
"""
from .build import build
from .executor import Library
from .frontend import from_onnx, from_torch
from .ir import Module
from .loaded import load_library
from .tune import extract_tasks, tune

__all__ = ["from_onnx", "from_torch", "build", "tune", "extract_tasks", "Library", "Module",
           "load_library"]
