#!/bin/bash
# One prepared run on a lent GPU (issue 8): GPU tests, kernel benchmarks, a short GPU tuning run
# and models end to end. Usage on the device machine, from the repository root, with the wheels
# the image lacks (pytest, xgboost) carried in .whl/:  bash benchmarks/gpu_device_check.sh
# Every step has its own time limit; logs go to $OUT (or ./gpu_logs).
OUT=${OUT:-gpu_logs}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:${PYTHONPATH:-}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,memory.total --format=csv,noheader
python3 -c "import torch, numpy, llvmlite; from cuda.bindings import nvrtc; \
print('torch', torch.__version__, 'numpy', numpy.__version__, 'llvmlite', llvmlite.__version__, \
'nvrtc', nvrtc.nvrtcVersion()[1:])"
step() { local limit=$1 name=$2; shift 2; echo "=== $name"; local t0=$SECONDS;
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; local rc=$?;
  tail -n "${TAIL:-25}" "$OUT/$name.log"; echo "=== $name rc=$rc $((SECONDS - t0)) s"; }
TAIL=12 step 100 tests python3 -m pytest -q -p no:cacheprovider -rs --timeout 90 \
  tests/tensorlang/test_cuda_runtime.py tests/codegen/test_cuda_codegen.py \
  tests/tensorlang/test_gpu_schedules.py tests/codegen/test_cuda_tensorcore.py \
  tests/autotune/test_sketch_gpu.py tests/graph/test_gpu_graph.py -k "not light_model"
TAIL=14 step 70 bench python3 benchmarks/gpu_bench.py --json "$OUT/gpu_bench.json"
TAIL=16 step 80 models python3 benchmarks/gpu_models.py --runs 20
TAIL=14 step ${TUNE_LIMIT:-80} tune python3 benchmarks/tune_gpu.py --quiet ${TUNE_ARGS:---trials 24}
