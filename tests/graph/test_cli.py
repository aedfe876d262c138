"""The `tensorlang` command line, driven as a subprocess on tiny ONNX models made here."""
import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from graph_onnx_util import helper, make_model, run_ort

from autotune import Database, TuningRecord

RNG = np.random.default_rng(1234)


def _weights(*shape):
    return RNG.uniform(-1, 1, shape).astype("float32")


def _mlp():
    """x[4, 16] -> MatMul + Add + Relu -> MatMul + Add -> Softmax -> y[4, 8]."""
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["z"]),
             helper.make_node("Add", ["z", "b2"], ["zb"]),
             helper.make_node("Softmax", ["zb"], ["y"], axis=-1)]
    return make_model(nodes, [("x", (4, 16), "float32")], [("y", None, "float32")],
                      {"w1": _weights(16, 32), "b1": _weights(32), "w2": _weights(32, 8),
                       "b2": _weights(8)})


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    import onnx
    folder = tmp_path_factory.mktemp("cli")
    model = _mlp()
    path = folder / "mlp.onnx"
    onnx.save(model, path)
    x = RNG.standard_normal((4, 16)).astype("float32")
    np.save(folder / "x.npy", x)
    return model, path, x


def cli(*args, cwd=None):
    """Run ``python -m graph.cli ARGS``; returns the completed process (text output)."""
    return subprocess.run([sys.executable, "-m", "graph.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(result, *words):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tensorlang: error: ")
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


# -- help and usage ----------------------------------------------------------------------------

def test_help_lists_every_command_with_examples(capsys):
    from graph.cli import main
    result = cli("--help")
    assert result.returncode == 0
    for command in ("compile", "tune", "run", "bench", "inspect", "report", "db"):
        assert command in result.stdout
    for command in (["compile"], ["tune"], ["run"], ["bench"], ["inspect"], ["report"],
                    ["db"], ["db", "merge"]):  # in this process: the same parser, no start-up
        assert main([*command, "--help"]) == 0
        text = capsys.readouterr().out
        assert "examples:" in text and "tensorlang " + command[0] in text, command
        if command == ["tune"]:
            assert "resumable" in text and "--cluster" in text


@pytest.mark.skipif(shutil.which("tensorlang") is None,
                    reason="the console script is not installed (pip install -e .)")
def test_console_script():
    result = subprocess.run(["tensorlang", "db", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "merge" in result.stdout


def test_unknown_subcommand_is_one_line(capsys):
    from graph.cli import main
    assert_one_line_error(cli("frobnicate"), "frobnicate", "compile")
    assert main(["tune", "m.onnx", "--trials", "zero"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("tensorlang: error: ") and "--trials" in err[0]


# -- the user's mistakes: one line, exit 2, no traceback ---------------------------------------

def test_bad_model_path(tmp_path):
    assert_one_line_error(cli("inspect", tmp_path / "missing.onnx"), "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(bytes(RNG.integers(0, 256, 300, dtype=np.uint8)))
    assert_one_line_error(cli("run", junk, "--input", "x.npy"), "junk.onnx")


def test_unsupported_op(tmp_path):
    import onnx
    nodes = [helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")]
    model = make_model(nodes, [("x", (2, 2), "float32")], [("y", (2, 2), "float32")])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    onnx.save(model, tmp_path / "odd.onnx")
    assert_one_line_error(cli("compile", tmp_path / "odd.onnx", "-o", tmp_path / "odd.so"),
                          "Frobnicate")


def test_corrupt_and_foreign_databases(tmp_path, model_file):
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(bytes(RNG.integers(0, 256, 4096, dtype=np.uint8)))
    assert_one_line_error(cli("db", "list", corrupt), "corrupt.db")
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE people (name TEXT)")
    conn.commit()
    conn.close()
    _, path, _ = model_file
    assert_one_line_error(cli("inspect", path, "--database", foreign), "foreign.db",
                          "not a tensorlang tuning database")
    assert_one_line_error(cli("db", "list", tmp_path / "none.db"), "none.db")
    assert not (tmp_path / "none.db").exists()


def test_wrong_inputs(tmp_path, model_file):
    _, path, x = model_file
    np.save(tmp_path / "short.npy", x[:3])
    np.save(tmp_path / "double.npy", x.astype("float64"))
    assert_one_line_error(cli("run", path, "--input", f"x={tmp_path / 'short.npy'}"),
                          "shape", "(4, 16)")
    assert_one_line_error(cli("run", path, "--input", f"x={tmp_path / 'double.npy'}"),
                          "float32", "float64")
    assert_one_line_error(cli("run", path), "'x' is missing")
    assert_one_line_error(cli("run", path, "--input", f"nope={tmp_path / 'short.npy'}"),
                          "no input named 'nope'")


def test_verbose_shows_the_traceback(tmp_path):
    result = cli("--verbose", "inspect", tmp_path / "missing.onnx")
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "tensorlang: error:" in result.stderr


# -- commands ------------------------------------------------------------------------------------

def test_inspect_names_ops_groups_tasks_and_memory_plan(model_file):
    _, path, _ = model_file
    result = cli("inspect", path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for word in ("matmul", "relu", "softmax", "fused groups", "tuning tasks", "memory plan",
                 "naive", "input  x: float32[4, 16]"):
        assert word in out, word


def test_run_onnx_matches_onnxruntime(tmp_path, model_file):
    model, path, x = model_file
    result = cli("run", path, "--input", f"x={path.parent / 'x.npy'}", "--output",
                 tmp_path / "out")
    assert result.returncode == 0, result.stderr
    got = np.load(tmp_path / "out" / "y.npy")
    np.testing.assert_allclose(got, run_ort(model, {"x": x})[0], rtol=1e-4, atol=1e-6)
    summary = cli("run", path, "--input", path.parent / "x.npy")  # one input: NAME optional
    assert summary.returncode == 0 and summary.stdout.startswith("y: float32[4, 8]")


def test_compile_then_run_the_library(tmp_path, model_file):
    model, path, x = model_file
    result = cli("compile", path, "-o", tmp_path / "mlp.so")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "mlp.so").exists()
    result = cli("run", tmp_path / "mlp.so", "--input", f"x={path.parent / 'x.npy'}",
                 "--output", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "out" / "y.npy"),
                               run_ort(model, {"x": x})[0], rtol=1e-4, atol=1e-6)


def test_tune_writes_records_and_a_report(tmp_path, model_file):
    _, path, _ = model_file
    db, page = tmp_path / "tuning.db", tmp_path / "r.html"
    result = cli("tune", path, "--trials", 4, "--timeout", 5, "--database", db,
                 "--report", page)
    assert result.returncode == 0, result.stderr
    assert "run the same command again" in result.stdout
    with Database(db) as d:
        assert d.count() == 4
    html = page.read_text()
    assert '<img class="curve"' in html and 'src="data:image/png;base64,' in html
    assert "best measured schedule" in html and "for " in html and "parallel" in html
    assert "before and after tuning" in html
    listed = cli("db", "list", db)
    assert listed.returncode == 0 and "4 records of 1 tasks" in listed.stdout


def _records(key, schedules, created=0.0):
    return [TuningRecord(key, "llvm -mcpu=test -num-threads=1", "tests.w:f", s, costs=(1e-3,),
                         created=created + i) for i, s in enumerate(schedules)]


def test_db_export_import_merge_keep_counts(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    with Database(a) as d:
        d.commit_records(_records("k1", ["s1", "s2", "s3"]) + _records("k2", ["s1"]))
    with Database(b) as d:
        d.commit_records(_records("k1", ["s3", "s4"], created=10.0))  # s3: a duplicate
    jsonl = tmp_path / "a.jsonl"
    result = cli("db", "export", a, "-o", jsonl)
    assert result.returncode == 0, result.stderr
    assert len(jsonl.read_text().splitlines()) == 4
    assert cli("db", "import", tmp_path / "c.db", jsonl).returncode == 0
    again = cli("db", "import", tmp_path / "c.db", jsonl)
    assert "0 records added, 4 duplicates skipped" in again.stdout
    result = cli("db", "merge", a, b, "-o", tmp_path / "all.db")
    assert result.returncode == 0, result.stderr
    assert cli("db", "merge", a, b, tmp_path / "c.db", "-o", tmp_path / "all.db").returncode == 0
    with Database(tmp_path / "c.db") as d:
        assert d.count() == 4
    with Database(tmp_path / "all.db") as d:
        assert d.count() == 5
        assert sorted(r.schedule for r in d.records("k1")) == ["s1", "s2", "s3", "s4"]
    listed = cli("db", "list", tmp_path / "all.db")
    assert "5 records of 2 tasks" in listed.stdout
    one = cli("db", "export", tmp_path / "all.db", "--task", "k2")
    assert len(one.stdout.splitlines()) == 1
