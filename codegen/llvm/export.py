"""``Module.export_library``: an object file from LLVM, linked into a .so by the C compiler.

The library holds the kernel's entry points and an exported string ``tensorlang_module_info``
(JSON: the signature, the bench symbol, the parallel-launch pointer) that
:func:`tensorlang.runtime.module.load_module` reads. Parallel loops call through the pointer
``<name>__parallel_launch``: it starts at a serial launcher inside the library (so the .so runs
on its own, from C too) and ``load_module`` points it at the thread pool when the process has
one.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import llvmlite.binding as llvm
from llvmlite import ir

from tensorlang.errors import UnsupportedOpError, UserError
from tensorlang.runtime.module import INFO_SYMBOL

from .target import Target, target_machine

FORMAT = 1


def find_compiler() -> str | None:
    """The system C compiler used as linker: ``$CC``, else cc, gcc or clang on PATH."""
    candidates = [os.environ.get("CC", ""), "cc", "gcc", "clang"]
    for name in filter(None, candidates):
        found = shutil.which(name)
        if found:
            return found
    return None


def export_library(ir_text: str, lowered, target: Target, path: str) -> None:
    """Compile ``ir_text`` (optimised IR of ``lowered``) for ``target`` into the .so ``path``."""
    compiler = find_compiler()
    if compiler is None:
        raise UnsupportedOpError("export_library needs a C compiler to link the shared library "
                                 "(cc, gcc or clang on PATH, or $CC); none was found")
    machine = target_machine(target, jit=False)
    signature = lowered.signature
    info = json.dumps({"format": FORMAT, "signature": signature.to_json(),
                       "bench": f"{signature.entry}__bench",
                       "parallel_launch": lowered.launch_global, "target": str(target)})
    with tempfile.TemporaryDirectory(prefix="tensorlang_export_") as tmp:
        objects = []
        for name, text in (("kernel", ir_text), ("info", _info_module(info, machine, target))):
            module = llvm.parse_assembly(text)
            objects.append(os.path.join(tmp, f"{name}.o"))
            with open(objects[-1], "wb") as handle:
                handle.write(machine.emit_object(module))
        command = [compiler, "-shared", "-o", os.fspath(path), *objects, "-lm"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise UserError(f"linking {path} failed ({' '.join(command)}):\n{result.stderr}")


def _info_module(info: str, machine: llvm.TargetMachine, target: Target) -> str:
    module = ir.Module(name="tensorlang_info")
    module.triple = target.triple
    module.data_layout = str(machine.target_data)
    data = bytearray(info.encode("utf-8") + b"\0")
    ty = ir.ArrayType(ir.IntType(8), len(data))
    gv = ir.GlobalVariable(module, ty, INFO_SYMBOL)
    gv.global_constant, gv.initializer = True, ir.Constant(ty, data)
    return str(module)
