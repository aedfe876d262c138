"""The layers import one way: graph -> autotune -> codegen -> tensorlang (never upward)."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAYERS = ["tensorlang", "codegen", "autotune", "graph"]
# The one documented exception: tl.build imports codegen when it is called.
ALLOWED = {("tensorlang/__init__.py", "codegen.llvm"), ("tensorlang/__init__.py", "codegen.cuda")}


def _imports(path: pathlib.Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


@pytest.mark.parametrize("layer", LAYERS)
def test_no_upward_imports(layer):
    higher = LAYERS[LAYERS.index(layer) + 1:] + ["benchmarks", "tests"]
    bad = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for lineno, module in _imports(path):
            top = module.split(".")[0]
            if top in higher and (rel, module) not in ALLOWED:
                bad.append(f"{rel}:{lineno} imports {module}")
    assert not bad, "imports that run up the layers:\n" + "\n".join(bad)


def test_checker_sees_an_upward_import(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("import graph.ir\nfrom autotune import task\n")
    assert [m for _, m in _imports(f)] == ["graph.ir", "autotune"]
