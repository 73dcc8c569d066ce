#!/usr/bin/env bash
# Train the four 2.0.0 networks one after the other (issue 13): finetune preset, each warm-started
# from the shipped ONNX model of the same name (training/warmstart.py). See docs/models.md (Training).
#
#   nohup setsid training/run_v2.sh > runs/v2/run_v2.out 2>&1 &
#
# Bounded: each job stops after its preset's epochs (or early stopping). Resumable: run the same
# command again after a kill; a finished job (training.json present) is skipped, an unfinished
# one continues from its last.pt (--resume; the epoch that was interrupted is repeated).
# Logs: $OUT/<name>.log; checkpoints: $OUT/<name>/{last.pt,best.pt,metrics.jsonl,split.json}.
# The 1.x ONNX files they start from were replaced by 2.0.0 in models/; restore them first:
#   git checkout "$(git log -1 --format=%H --diff-filter=D -- models/unet-ct/1.0.0)~1" -- \
#       models/unet-cxr/1.1.0 models/cnn-cxr/1.0.0 models/unet-ct/1.0.0 models/cnn-ct/1.0.0
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/v2}
DATA=${LUNGSEG_DATA_DIR:-../shared/data}
PYTHON=${PYTHON:-.venv/bin/python}
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
mkdir -p "$OUT"
echo $$ > "$OUT/run_v2.pid"
status=0

job() {  # name kind modality onnx
    local name=$1 kind=$2 modality=$3 init=$4
    if [ -f "$OUT/$name/training.json" ]; then
        echo "$(date -Is) $name: already finished, skipped"
        return 0
    fi
    echo "$(date -Is) $name: start (log $OUT/$name.log)"
    "$PYTHON" -m training --preset finetune --data "$DATA" --out "$OUT" \
        --model "$kind" --modality "$modality" --init "$init" --version 2.0.0 \
        --threads 2 --resume >> "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$(date -Is) $name: exit $rc"
    [ "$rc" -eq 0 ] || status=1
}

job unet-cxr unet cxr models/unet-cxr/1.1.0/model.onnx
job cnn-cxr cnn cxr models/cnn-cxr/1.0.0/model.onnx
job unet-ct unet ct models/unet-ct/1.0.0/model.onnx
job cnn-ct cnn ct models/cnn-ct/1.0.0/model.onnx
echo "$(date -Is) all done (status $status)"
rm -f "$OUT/run_v2.pid"
exit "$status"
