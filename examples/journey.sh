#!/usr/bin/env bash
# The main job from a shell, on one of the real models that the `onnx` package ships (their
# shipped weights are constants; random ones are put in their place, so that the outputs mean
# something to compare): tune its heaviest kernels into the default SQLite database, compile it
# to a shared library with those records, run the library, time it beside ONNX Runtime, and
# write the HTML tuning report.
#
#   bash examples/journey.sh                 # ResNet-50, 32 trials
#   MODEL=squeezenet TRIALS=64 bash examples/journey.sh
#
# Run it again to go on tuning: the database keeps every measurement.
set -euo pipefail
MODEL_NAME=${MODEL:-resnet50}
TRIALS=${TRIALS:-32}
DB=${DB:-tuning.db}
OUT=${OUT:-journey_out}
mkdir -p "$OUT"
MODEL_PATH="$OUT/$MODEL_NAME.onnx"
INPUT=$(python - "$MODEL_NAME" "$MODEL_PATH" "$OUT/input.npy" <<'PY'
import sys, numpy as np, onnx, graph
from graph.light_models import light_model_path, randomize_weights
onnx.save(randomize_weights(onnx.load(light_model_path(sys.argv[1]))), sys.argv[2])
mod = graph.from_onnx(sys.argv[2])
param = mod.function.params[0]
np.save(sys.argv[3], np.random.default_rng(0).standard_normal(param.type.shape).astype(param.type.dtype))
print(mod.input_names[0])
PY
)
set -x
tensorlang inspect "$MODEL_PATH"
tensorlang tune "$MODEL_PATH" --trials "$TRIALS" --database "$DB" --report "$OUT/report.html"
tensorlang compile "$MODEL_PATH" --database "$DB" -o "$OUT/model.so"
tensorlang run "$OUT/model.so" --input "$INPUT=$OUT/input.npy" --output "$OUT/outputs"
tensorlang bench "$MODEL_PATH" --database "$DB" --threads 1,2
