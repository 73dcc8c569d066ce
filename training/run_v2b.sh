#!/usr/bin/env bash
# The second half of the 2.0.0 training (issue 13), after training/run_v2.sh's unet-cxr:
#   1. unet-cxr continued from runs/v2/unet-cxr/best.pt for 3 epochs at lr 1e-4 with
#      --no-infection-negatives (non-COVID images train the decision head only: 2.0.0's first
#      run lost infection Dice, 0.78 -> 0.71, learning their empty infection targets);
#   2. unet-ct, cnn-ct from their shipped ONNX files (finetune preset);
#   3. cnn-cxr from its shipped ONNX file with --no-infection-negatives, 4 epochs, into runs/v2c
#      (with the infection negatives its infection Dice fell 0.75 -> 0.54 in two epochs, as the
#      U-Net's had: stopped, and run again this way).
# Bounded and resumable like run_v2.sh (a finished job is skipped; --resume continues one).
#
#   nohup setsid training/run_v2b.sh > runs/v2b/run.out 2>&1 &
# The 1.x ONNX files they start from were replaced by 2.0.0 in models/; restore them first:
#   git checkout "$(git log -1 --format=%H --diff-filter=D -- models/unet-ct/1.0.0)~1" -- \
#       models/unet-cxr/1.1.0 models/cnn-cxr/1.0.0 models/unet-ct/1.0.0 models/cnn-ct/1.0.0
set -u
cd "$(dirname "$0")/.."
DATA=${LUNGSEG_DATA_DIR:-../shared/data}
PYTHON=${PYTHON:-.venv/bin/python}
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
mkdir -p runs/v2b runs/v2 runs/v2c
status=0

job() {  # out name kind modality init [extra args...]
    local out=$1 name=$2 kind=$3 modality=$4 init=$5
    shift 5
    if [ -f "$out/$name/training.json" ]; then
        echo "$(date -Is) $name: already finished, skipped"
        return 0
    fi
    echo "$(date -Is) $name: start (log $out/$name.log)"
    "$PYTHON" -m training --preset finetune --data "$DATA" --out "$out" \
        --model "$kind" --modality "$modality" --init "$init" --version 2.0.0 \
        --threads 2 --resume "$@" >> "$out/$name.log" 2>&1
    local rc=$?
    echo "$(date -Is) $name: exit $rc"
    [ "$rc" -eq 0 ] || status=1
}

job runs/v2b unet-cxr unet cxr runs/v2/unet-cxr/best.pt --no-infection-negatives --lr 1e-4 --epochs 3
job runs/v2 unet-ct unet ct models/unet-ct/1.0.0/model.onnx
job runs/v2 cnn-ct cnn ct models/cnn-ct/1.0.0/model.onnx
job runs/v2c cnn-cxr cnn cxr models/cnn-cxr/1.0.0/model.onnx --no-infection-negatives --epochs 4
echo "$(date -Is) all done (status $status)"
exit "$status"
