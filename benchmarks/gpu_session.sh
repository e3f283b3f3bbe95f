#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one command (about 10 minutes on an H100):
#   1. the kernel tests on the GPU (fp32, fp16, bf16 against the torch reference),
#   2. the real-timm routing test (timm must be installed there),
#   3. benchmarks/attention.py in bf16 (table of time and peak memory against SDPA flash, FlexAttention, ...),
#   4. benchmarks/token_pruning.py on ViT-S/16 sizes.
# Needs only torch, triton, numpy, tqdm (and timm for step 2) on the GPU machine; salguide is used from
# this checkout. Results go to $OUT (default: gpu_results/), then copy them into docs/ and experiments/:
#   bash benchmarks/gpu_session.sh && cp gpu_results/attention.md docs/benchmarks_attention_gpu.md
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_results}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
status=0

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"

"$PY" -m pytest -q -p no:cacheprovider tests/kernels 2>&1 | tee "$OUT/kernel_tests.log" | tail -5 || status=1
"$PY" -m pytest -q -p no:cacheprovider tests/attention/test_attention_routing.py -k real_timm -rs 2>&1 \
    | tee "$OUT/real_timm.log" | tail -3 || status=1
timeout 420 "$PY" benchmarks/attention.py --dtype bf16 --output "$OUT/attention.md" 2>&1 \
    | tee "$OUT/attention.log" | tail -40 || status=1
timeout 300 "$PY" benchmarks/token_pruning.py --model vit_s16 --device cuda --dtype bf16 --batch 128 \
    --output "$OUT/token_pruning_gpu.md" 2>&1 | tee "$OUT/token_pruning.log" | tail -20 || status=1
exit $status
