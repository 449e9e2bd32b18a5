#!/usr/bin/env bash
# GPU check for issue 9 (Dilu), for a machine with an NVIDIA GPU; nothing else depends on it.
#   bash bench/gpu_check.sh            # writes $OUT (default /tmp/gpu-check)
# 1. starts the CUDA MPS control daemon (SM shares are MPS active-thread percentages);
# 2. profiles a real model (a 4 x 4096 MLP) by Dilu's pruning search under MPS
#    (batchwise gpu profile --live-gpu mlp), inference and training;
# 3. runs two co-located functions (inference + training MLPs) alone, with a static
#    split and under the vertical controller (bench/gpu_colocate.py).
# Runs from the repository root with the package on PYTHONPATH (no install needed where
# torch, numpy, typer, pydantic, rich and pyyaml are present). About 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
export CUDA_MPS_PIPE_DIRECTORY=${CUDA_MPS_PIPE_DIRECTORY:-/tmp/nvidia-mps}
export CUDA_MPS_LOG_DIRECTORY=${CUDA_MPS_LOG_DIRECTORY:-/tmp/nvidia-mps-log}
mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
nvidia-cuda-mps-control -d 2>/dev/null || echo "MPS daemon already running"
trap 'echo quit | nvidia-cuda-mps-control 2>/dev/null || true' EXIT
"$PY" -m batchwise.cli gpu profile --live-gpu mlp --qos 0.01 --json | tee "$OUT/profile-inference.json"
"$PY" -m batchwise.cli gpu profile --live-gpu mlp --training --batch 64 --json \
    | tee "$OUT/profile-training.json"
"$PY" bench/gpu_colocate.py --device cuda --duration 20 --json | tee "$OUT/colocate.json"
