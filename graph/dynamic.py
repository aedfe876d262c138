"""Symbolic input dims (a dynamic batch): one built library that runs every size.

Graph IR shapes are static, so a frontend that sees a symbolic dim (``torch.export`` with a
``Dim``) returns the Module for its example sizes together with a :class:`Specializer`: which
input dims are symbolic, and how to rebuild the Module for other values of the symbols. A
Library built from such a Module checks every call's inputs against the symbols; when their
values differ from the ones it was built for, it builds (once per distinct set of values, with
the same target and database) and runs a library specialised for them. This is the
specialise-and-cache policy that DESIGN.md sets for shape-deciding inputs, applied to dims.

Example::

    mod = attach_specializer(mod, dims=(("x", 0, "batch"),), rebuild=make_module)
    lib = graph.build(mod)
    lib.run(x1)          # the example batch
    lib.run(x8)          # batch 8: specialised, compiled once, then cached
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from tensorlang.errors import ShapeError, UserError

from .ir import Module


@dataclass(frozen=True)
class Specializer:
    """Which input dims are symbolic and how to rebuild the module for their values.

    Attributes:
        dims: ``((input name, axis, symbol name), ...)``; inputs may share a symbol.
        rebuild: ``{symbol name: int} -> Module`` with static shapes for those values.
    """
    dims: tuple
    rebuild: Callable

    def symbols(self) -> tuple:
        """The distinct symbol names, in first-use order."""
        return tuple(dict.fromkeys(symbol for _, _, symbol in self.dims))

    def values(self, shapes: dict) -> dict:
        """``{symbol: size}`` read from ``shapes`` (``{input name: shape tuple}``).

        Raises:
            ShapeError: an input has too few dims for its symbolic axis, or two inputs give
                one symbol different sizes (the message names both).
        """
        values, origin = {}, {}
        for name, axis, symbol in self.dims:
            shape = shapes.get(name)
            if shape is None:
                continue
            if axis >= len(shape):
                raise ShapeError(f"input {name!r} must have at least {axis + 1} dims (its dim "
                                 f"{axis} is the symbolic {symbol!r}), got shape {tuple(shape)}")
            size = int(shape[axis])
            if symbol in values and values[symbol] != size:
                first = origin[symbol]
                raise ShapeError(f"symbolic dim {symbol!r} is {values[symbol]} in input "
                                 f"{first[0]!r} (dim {first[1]}) but {size} in input {name!r} "
                                 f"(dim {axis})")
            values[symbol] = size
            origin[symbol] = (name, axis)
        return values


def attach_specializer(mod: Module, dims, rebuild: Callable) -> Module:
    """``mod`` (built for the example sizes) with the symbolic ``dims`` and the ``rebuild``
    function recorded, so that ``graph.build`` gives a library that runs any size.

    Example:
        >>> mod = attach_specializer(mod, (("x", 0, "batch"),), make_module)  # doctest: +SKIP
    """
    if not isinstance(mod, Module):
        raise UserError(f"attach_specializer takes a graph Module, got {type(mod).__name__}")
    dims = tuple((str(n), int(a), str(s)) for n, a, s in dims)
    for name, axis, symbol in dims:
        if name not in mod.input_names:
            raise UserError(f"symbolic dim {symbol!r}: the model has no input {name!r}; its "
                            f"inputs are {list(mod.input_names)}")
        rank = len(mod.function.params[mod.input_names.index(name)].type.shape)
        if not 0 <= axis < rank:
            raise UserError(f"symbolic dim {symbol!r}: input {name!r} has {rank} dims, no "
                            f"dim {axis}")
    return Module(mod.function, mod.input_names, mod.output_names,
                  specializer=Specializer(dims, rebuild))


class Specializations:
    """The libraries of one dynamic model, one per distinct set of symbol values.

    ``build(module) -> Library`` compiles a static module (``graph.build`` with the original
    target and database); ``own`` are the values the first library was built for.
    """

    def __init__(self, specializer: Specializer, build: Callable, own: dict):
        self.specializer = specializer
        self._build = build
        self.own = dict(own)
        self._libraries: dict = {}
        self._lock = threading.Lock()

    def library_for(self, shapes: dict):
        """The library for the sizes in ``shapes``, or None when they are ``own``."""
        values = self.specializer.values(shapes)
        values = {**self.own, **values}
        if values == self.own:
            return None
        key = tuple(sorted(values.items()))
        with self._lock:
            lib = self._libraries.get(key)
            if lib is None:
                try:
                    mod = self.specializer.rebuild(dict(values))
                except ShapeError:
                    raise
                except UserError as exc:
                    raise ShapeError(f"cannot specialise the model for "
                                     f"{_values_text(values)}: {exc}") from exc
                lib = self._build(mod)
                self._libraries[key] = lib
            return lib

    def __len__(self):
        return len(self._libraries)


def _values_text(values: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items()))


def input_shape(value) -> tuple | None:
    """The shape of a run-time input (NumPy, ``tl.nd``, torch, anything with ``.shape``)."""
    shape = getattr(value, "shape", None)
    return tuple(int(d) for d in shape) if shape is not None else None


__all__ = ["Specializer", "Specializations", "attach_specializer", "input_shape"]
