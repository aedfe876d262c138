"""Tune fp32 matmul 1024^3 with the auto-scheduler and compare with ONNX Runtime, NumPy and
the hand schedule, on 1 and 2 threads.

    python benchmarks/tune_matmul.py [--trials 64 200 1000] [--threads 1 2] [--args 1024 1024 1024]

Prints GFLOP/s of the best schedule after each trial count, the tuning wall time, measured
trials per minute and the ratios (see ``tune_common.py``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tune_common  # noqa: E402

if __name__ == "__main__":
    tune_common.main("matmul", (1024, 1024, 1024), __doc__)
