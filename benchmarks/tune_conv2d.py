"""Tune a ResNet-50 3x3 conv layer (1x64x56x56, 64 filters, pad 1) with the auto-scheduler and
compare with ONNX Runtime and the hand schedule, on 1 and 2 threads.

    python benchmarks/tune_conv2d.py [--trials 64 200 1000] [--threads 1 2]
        [--args BATCH CHANNELS HEIGHT WIDTH FILTERS KERNEL STRIDE PAD]

Prints GFLOP/s of the best schedule after each trial count, the tuning wall time, measured
trials per minute and the ratios (see ``tune_common.py``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tune_common  # noqa: E402

if __name__ == "__main__":
    tune_common.main("conv2d", (1, 64, 56, 56, 64, 3, 1, 1), __doc__)
