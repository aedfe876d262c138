"""A kernel compilation worker (see :mod:`graph.compile`): reads one JSON job per line on stdin
(``name``, ``spec``, ``target``, ``database``, ``path``; ``target_key`` for CUDA), compiles the
group and writes it at ``path`` (a shared library, its LLVM IR at ``path + ".ll"``; for CUDA
the pickled CudaModule with its cubin), and answers ``ok`` or ``error <message>`` on one line."""
from __future__ import annotations

import json
import sys


def main() -> None:
    from graph.compile import _compile_cuda_here, _compile_here
    for line in sys.stdin:
        job = json.loads(line)
        try:
            if job.get("target_key"):  # CUDA: the module (source + cubin) pickled
                import pickle
                module = _compile_cuda_here(job["name"], job["spec"], job["target"],
                                            job["database"], job["target_key"])
                with open(job["path"], "wb") as f:
                    pickle.dump(module, f)
            else:
                kernel = _compile_here(job["name"], job["spec"], job["target"],
                                       job["database"])
                kernel.export_library(job["path"])
                with open(job["path"] + ".ll", "w") as f:  # the IR, which the .so lacks
                    f.write(kernel.get_source("ll"))
            reply = "ok"
        except Exception as err:  # noqa: BLE001 - the parent compiles it again to raise it
            reply = "error " + " ".join(str(err).split())[:500]
        sys.stdout.write(reply + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
