"""Model importers: ONNX (``from_onnx``), PyTorch (``from_torch``, through torch.export)."""
from .onnx import from_onnx
from .torch import from_torch

__all__ = ["from_onnx", "from_torch"]
