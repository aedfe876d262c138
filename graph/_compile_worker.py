"""A kernel compilation worker (see :mod:`graph.compile`): reads one JSON job per line on stdin
(``name``, ``spec``, ``target``, ``database``, ``path``), compiles the group and writes it as a
shared library at ``path``, and answers ``ok`` or ``error <message>`` on one line."""
from __future__ import annotations

import json
import sys


def main() -> None:
    from graph.compile import _compile_here
    for line in sys.stdin:
        job = json.loads(line)
        try:
            _compile_here(job["name"], job["spec"], job["target"], job["database"]) \
                .export_library(job["path"])
            reply = "ok"
        except Exception as err:  # noqa: BLE001 - the parent compiles it again to raise it
            reply = "error " + " ".join(str(err).split())[:500]
        sys.stdout.write(reply + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
