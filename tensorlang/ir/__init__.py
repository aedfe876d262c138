"""Loop IR: buffers, statements, PrimFunc, traversal, printing, verification, interpretation."""
from .buffer import Buffer, decl_buffer, GLOBAL, LOCAL, SHARED
from .stmt import (Stmt, For, SeqStmt, BufferStore, IfThenElse, LetStmt, Allocate, Evaluate,
                   AssertStmt, AttrStmt, seq, SERIAL, PARALLEL, VECTORIZED, UNROLLED,
                   THREAD_BINDING)
from .function import PrimFunc
from .functor import Visitor, Mutator, post_order_visit, substitute, free_vars
from .structural import structural_equal, structural_hash
from .printer import to_text
from .verify import verify_well_formed
from . import interpreter

__all__ = [
    "Buffer", "decl_buffer", "GLOBAL", "LOCAL", "SHARED",
    "Stmt", "For", "SeqStmt", "BufferStore", "IfThenElse", "LetStmt", "Allocate", "Evaluate",
    "AssertStmt", "AttrStmt", "seq", "SERIAL", "PARALLEL", "VECTORIZED", "UNROLLED",
    "THREAD_BINDING", "PrimFunc", "Visitor", "Mutator", "post_order_visit", "substitute",
    "free_vars", "structural_equal", "structural_hash", "to_text", "verify_well_formed",
    "interpreter",
]
