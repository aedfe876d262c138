"""The project's error types.

``UserError`` and its subclasses mean the caller asked for something wrong (an illegal schedule,
a shape or dtype that does not fit); they are also ``ValueError`` subclasses so generic code
catching ``ValueError`` keeps working. ``InternalError`` means tensorlang itself is wrong.
"""


class TensorlangError(Exception):
    """Base of every error tensorlang raises on purpose."""


class UserError(TensorlangError, ValueError):
    """The input (program, schedule, arrays, model) is wrong; the message names the culprit."""


class ScheduleError(UserError):
    """An illegal schedule request, naming the stage and the axis."""


class ShapeError(UserError):
    """A shape, rank or index that does not fit."""


class DTypeError(UserError, TypeError):
    """A dtype that is unsupported or would lose meaning."""


class UnsupportedOpError(UserError):
    """An operation, intrinsic or feature that is not supported (yet) on this path."""


class CudaUnavailableError(UnsupportedOpError):
    """CUDA was asked for where there is no usable CUDA (no cuda-python, driver or GPU)."""


class CudaError(TensorlangError, RuntimeError):
    """A CUDA driver call failed; the message names the call, the driver's error name and text,
    and the kernel when a launch is involved."""


class InternalError(TensorlangError, RuntimeError):
    """A bug in tensorlang: please report it with the program that triggered it."""
