"""The ``tensorlang`` command line: compile, tune, run, bench, inspect, report and db, for people
who never open Python.

This module holds the argument parser and the error handling; the subcommands' bodies are in
:mod:`graph.cli_commands` and :mod:`graph.cli_db` (imported once the arguments are parsed, so ``--help`` and usage
errors answer without loading the compiler). A mistake of the user's (a missing file, a model
with an unsupported operator, a database that is not one, an input of the wrong shape) prints
one line ``tensorlang: error: ...`` on stderr and exits with status 2; ``--verbose`` adds the
traceback. A bug of ours exits with status 1.

Example::

    $ tensorlang tune model.onnx --trials 200 --database tuning.db --report report.html
    $ tensorlang compile model.onnx --database tuning.db -o model.so
    $ tensorlang run model.so --input x=x.npy --output out/
    $ python3 -m graph.cli inspect model.onnx
"""
from __future__ import annotations

import argparse
import sys
import traceback

__all__ = ["main", "build_parser"]

USAGE_ERROR = 2      # the user's mistake (argparse uses 2 as well)
INTERNAL_ERROR = 1   # ours

_DESCRIPTION = """\
tensorlang: compile ONNX models to native code, tune their kernels on this machine, run and
benchmark them, and manage tuning databases."""

_EPILOG = """\
examples:
  tensorlang inspect model.onnx
  tensorlang tune model.onnx --trials 200 --database tuning.db --report report.html
  tensorlang compile model.onnx --database tuning.db -o model.so
  tensorlang run model.so --input x=x.npy --output out/
  tensorlang bench model.onnx --database tuning.db --threads 1,2
  tensorlang db list tuning.db

Run 'tensorlang COMMAND --help' for the options of a command."""

_SHAPE_HELP = ("fix an input's shape, e.g. --shape input=1,3,224,224 (needed for symbolic "
               "dimensions; repeat for several inputs)")


class CommandLineError(Exception):
    """A wrong command line (unknown command or option, bad value): one line on stderr."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage + message
        raise CommandLineError(f"{message} (see '{self.prog} --help')")


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _command(sub, name: str, help: str, examples: str, handler: str, common) -> _Parser:
    parser = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                            epilog="examples:\n" + examples, formatter_class=_formatter,
                            parents=[common])
    parser.set_defaults(handler=handler)
    return parser


def _model_options(parser, database_help: str) -> None:
    parser.add_argument("--target", default="llvm",
                        help="target string (default: llvm, this CPU; 'llvm -mcpu=NAME' for "
                             "another CPU; 'cuda' for an NVIDIA GPU)")
    parser.add_argument("--shape", action="append", default=[], metavar="NAME=D1,D2,...",
                        help=_SHAPE_HELP)
    parser.add_argument("--database", metavar="DB", help=database_help)


def build_parser() -> argparse.ArgumentParser:
    """The ``tensorlang`` argument parser (its subcommands carry a ``handler`` name: the
    function ``<handler>_command`` of :mod:`graph.cli_commands` or, for ``db_*``,
    :mod:`graph.cli_db`).

    Example:
        >>> args = build_parser().parse_args(["inspect", "model.onnx"])
        >>> args.handler, args.model
        ('inspect', 'model.onnx')
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error")
    common.add_argument("--progress", action=argparse.BooleanOptionalAction,
                        default=argparse.SUPPRESS,
                        help="progress bars on stderr (default: when stderr is a terminal)")
    parser = _Parser(prog="tensorlang", description=_DESCRIPTION, epilog=_EPILOG,
                     formatter_class=_formatter, parents=[common])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                                parser_class=_Parser)

    p = _command(sub, "compile", "compile an ONNX model into a shared library", """\
  tensorlang compile model.onnx -o model.so
  tensorlang compile model.onnx --database tuning.db -o model.so     # tuned kernels
  tensorlang compile model.onnx --shape input=1,3,224,224 -o model.so""", "compile", common)
    p.add_argument("model", help="the .onnx file")
    p.add_argument("-o", "--output", required=True, metavar="FILE.so",
                   help="the shared library to write (load it with graph.load_library or "
                        "'tensorlang run FILE.so')")
    _model_options(p, "tuning database whose best schedules to use (default: untuned)")

    p = _command(sub, "tune", "tune the kernels of an ONNX model on this machine", """\
  tensorlang tune model.onnx --trials 200 --database tuning.db
  tensorlang tune model.onnx --trials 200 --database tuning.db   # again: 200 more trials
  tensorlang tune model.onnx --trials 64 --database tuning.db --report report.html
  tensorlang tune model.onnx --trials 2000 --database tuning.db --cluster tcp://host:8786

Tuning is resumable: every measurement is stored in the database as it is made, so an
interrupted run loses nothing, and running the same command again continues from the records
already there (never measuring a schedule twice).""", "tune", common)
    p.add_argument("model", help="the .onnx file")
    p.add_argument("--trials", type=_positive_int, default=200, metavar="N",
                   help="measurements to make in this run, over all tasks (default: 200)")
    p.add_argument("--timeout", type=_positive_float, default=10.0, metavar="S",
                   help="seconds one candidate may run (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the search (default: 0)")
    p.add_argument("--cluster", metavar="tcp://HOST:8786",
                   help="build and measure on the workers of this Dask scheduler (the "
                        "distributed extra; start workers with 'dask worker ADDRESS "
                        "--resources measure=1'); search and database stay here")
    p.add_argument("--report", metavar="FILE.html",
                   help="write an HTML report (tuning curves, best loops, time per group)")
    _model_options(p, "the tuning database (SQLite; created when missing; default: "
                      "tuning.db)")
    p.set_defaults(database="tuning.db")

    p = _command(sub, "run", "run a model (.onnx or a compiled .so) on inputs from .npy files",
                 """\
  tensorlang run model.onnx --input x=x.npy                  # prints a summary of each output
  tensorlang run model.so --input x=x.npy --output out/       # writes out/<output name>.npy
  tensorlang run model.onnx --input x.npy                     # a model with one input""",
                 "run", common)
    p.add_argument("model", help="an .onnx file (compiled first) or a .so from 'compile'")
    p.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE.npy",
                   help="an input array (repeat for each input; NAME may be left out when "
                        "the model has one input)")
    p.add_argument("--output", "-o", metavar="DIR",
                   help="folder to write each output to, as DIR/<output name>.npy")
    _model_options(p, "tuning database for compiling an .onnx model (default: untuned)")

    p = _command(sub, "bench", "time the compiled model against ONNX Runtime", """\
  tensorlang bench model.onnx
  tensorlang bench model.onnx --database tuning.db --threads 1,2,4 --number 100

Both run on the same random inputs with the same thread count (tensorlang's pool size and
ONNX Runtime's intra-op threads; inter-op 1); the table gives the median latency.""",
                 "bench", common)
    p.add_argument("model", help="the .onnx file")
    p.add_argument("--threads", type=_int_list, default=None, metavar="N,N,...",
                   help="thread counts to measure with (default: 1 and all cores)")
    p.add_argument("--number", type=_positive_int, default=50,
                   help="timed runs per measurement (default: 50)")
    _model_options(p, "tuning database to compile with (default: untuned)")

    p = _command(sub, "inspect", "show a model's operators, fused groups, tasks and memory plan",
                 """\
  tensorlang inspect model.onnx
  tensorlang inspect model.onnx --database tuning.db     # with each task's tuning state""",
                 "inspect", common)
    p.add_argument("model", help="the .onnx file")
    p.add_argument("--no-build", action="store_true",
                   help="skip compiling (and so the memory plan)")
    _model_options(p, "tuning database: show each task's trials and best time")

    p = _command(sub, "report", "write the HTML tuning report of a tuned model", """\
  tensorlang report model.onnx --database tuning.db -o report.html""", "report", common)
    p.add_argument("model", help="the .onnx file")
    p.add_argument("-o", "--output", default="report.html", metavar="FILE.html",
                   help="the page to write (default: report.html)")
    p.add_argument("--no-profile", action="store_true",
                   help="leave out the time per fused group (which builds the model twice)")
    _model_options(p, "the tuning database (default: tuning.db)")
    p.set_defaults(database="tuning.db")

    _db_commands(sub, common)
    return parser


def _db_commands(sub, common) -> None:
    db = _command(sub, "db", "list, export, import or merge tuning databases", """\
  tensorlang db list tuning.db
  tensorlang db export tuning.db -o records.jsonl
  tensorlang db import tuning.db records.jsonl
  tensorlang db merge machine_a.db machine_b.db -o all.db""", "db", common)
    actions = db.add_subparsers(dest="action", metavar="ACTION", title="actions",
                                parser_class=_Parser, required=True)
    p = _command(actions, "list", "show the tasks of a database with their records",
                 "  tensorlang db list tuning.db", "db_list", common)
    p.add_argument("database", help="the tuning database")
    p = _command(actions, "export", "write the records of a database as JSON lines", """\
  tensorlang db export tuning.db -o records.jsonl
  tensorlang db export tuning.db --task 3b0b1829 > one_task.jsonl""", "db_export", common)
    p.add_argument("database", help="the tuning database")
    p.add_argument("-o", "--output", default="-", metavar="FILE.jsonl",
                   help="file to write (default: standard output)")
    p.add_argument("--task", metavar="KEY", help="only the task whose key starts with KEY")
    p = _command(actions, "import", "add JSON-lines records to a database (duplicates skipped)",
                 "  tensorlang db import tuning.db records.jsonl more.jsonl", "db_import",
                 common)
    p.add_argument("database", help="the tuning database (created when missing)")
    p.add_argument("files", nargs="+", metavar="FILE.jsonl", help="records to add")
    p = _command(actions, "merge", "combine databases into one, without duplicate records", """\
  tensorlang db merge a.db b.db -o all.db

A record is a duplicate when a record of the same task, target and schedule is already in the
output (the first one is kept); OUT may be one of the inputs.""", "db_merge", common)
    p.add_argument("sources", nargs="+", metavar="DB", help="databases to read")
    p.add_argument("-o", "--output", required=True, metavar="OUT.db",
                   help="the database to write (created when missing)")


# -- argument types ------------------------------------------------------------------------------

def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _int_list(text: str) -> list[int]:
    return [_positive_int(part.strip()) for part in text.split(",") if part.strip()]


# -- main ----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """Run the ``tensorlang`` command line with ``argv`` (default: ``sys.argv[1:]``); returns
    the exit status (0 success, 2 the user's mistake, 1 an internal error).

    Example:
        >>> main(["db", "list", "tuning.db"])   # doctest: +SKIP
        0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except CommandLineError as exc:
        return _fail(str(exc), USAGE_ERROR)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return USAGE_ERROR
    verbose = getattr(args, "verbose", False)
    try:
        # here, not at the top: `--help` and usage errors answer without loading the compiler
        from . import cli_commands, cli_db
        module = cli_db if args.handler.startswith("db_") else cli_commands
        return getattr(module, args.handler + "_command")(args) or 0
    except BrokenPipeError:  # `tensorlang db export DB | head`: the reader has gone
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        if verbose:
            traceback.print_exc()
        return _fail("interrupted", 130)
    except Exception as exc:  # noqa: BLE001 — every error becomes one line (or a traceback)
        if verbose:
            traceback.print_exc()
        message, status = _describe(exc)
        return _fail(message, status)


def _describe(exc: BaseException) -> tuple[str, int]:
    """The one-line message and exit status of an error."""
    import sqlite3
    from tensorlang.errors import UserError
    if isinstance(exc, (UserError, CommandLineError)):
        return str(exc), USAGE_ERROR
    if isinstance(exc, sqlite3.DatabaseError):
        return f"tuning database: {exc}", USAGE_ERROR
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or exc}: {exc.filename}", USAGE_ERROR
    return (f"internal error: {type(exc).__name__}: {exc} (run with --verbose for the "
            "traceback, and please report it)", INTERNAL_ERROR)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises no second BrokenPipeError."""
    import os
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _fail(message: str, status: int) -> int:
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    print(f"tensorlang: error: {line}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
