#!/usr/bin/env bash
# Everything that needs a CUDA GPU, as steps of at most 8 minutes each (a GPU call is limited to 10):
#   env            GPU name, driver, torch and triton versions
#   kernel_tests   pytest tests/kernels on the GPU (fp32, fp16, bf16 against the torch reference), one
#                  autotune config per kernel (SALGUIDE_TRITON_AUTOTUNE=0)
#   compile_full   the whole sm_90a compile matrix (every config, dtype, head dim and option set) on all cores
#   real_timm      the real-timm routing test (timm must be installed there)
#   attention:I    benchmarks/attention.py case I (0..7: four shapes x keep 1.0 / 0.5), rows appended to
#                  $OUT/attention.md as they are measured
#   attention      every attention case, one step each
#   pruning        benchmarks/token_pruning.py on ViT-S/16 sizes
#   pruning_compile  the same, torch.compile'd (EViT at keep 0.7 only: each policy and mode compiles once;
#                  each first step's time is printed as soon as it is known)
#   smoke          the attention benchmark's smoke test on the GPU
#   profile_attention, profile_vit   benchmarks/attention_profile.py: where the host and device time goes
# Usage: bash benchmarks/gpu_session.sh [STEP ...]   (no step: env kernel_tests compile_full real_timm attention pruning)
# A step that fails or runs past its limit is logged and the next one runs; the exit status says
# whether any failed. Results go to $OUT (default gpu_results/); copy the tables into docs/.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_results}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TRITON_DEFAULT_FP_FUSION=1
PY="${PYTHON:-python3}"
LIMIT="${STEP_LIMIT:-480}"
status=0

step() {  # name, command...: run with the step limit, log, never stop the session
    local name=$1
    shift
    echo "== $name" | tee -a "$OUT/steps.log"
    timeout "$LIMIT" "$@" 2>&1 | tee "$OUT/$name.log" | tail -25
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc" | tee -a "$OUT/steps.log"
    [ "$rc" -eq 0 ] || status=1
}

run_step() {
    case "$1" in
    env)
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
        "$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
            | tee -a "$OUT/gpu.txt" ;;
    kernel_tests)
        SALGUIDE_TRITON_AUTOTUNE=0 step kernel_tests "$PY" -m pytest -q -p no:cacheprovider tests/kernels ;;
    compile_full)
        SALGUIDE_SM90_FULL=1 step compile_full "$PY" -m pytest -q -p no:cacheprovider -n "$(nproc)" \
            tests/kernels/test_compile_sm90.py ;;
    real_timm)
        step real_timm "$PY" -m pytest -q -p no:cacheprovider tests/attention/test_attention_routing.py -k real_timm -rs ;;
    attention)
        for i in 0 1 2 3 4 5 6 7; do run_step "attention:$i"; done ;;
    attention:*)
        step "attention_${1#attention:}" "$PY" benchmarks/attention.py --dtype bf16 --case "${1#attention:}" \
            --output "$OUT/attention.md" ;;
    pruning)
        step pruning "$PY" benchmarks/token_pruning.py --model vit_s16 --device cuda --dtype bf16 --batch 128 \
            --output "$OUT/token_pruning_gpu.md" ;;
    pruning_compile)  # EViT's compiled graph takes ~2-3x the unpruned one to compile (CPU: 52 vs 18 s of C++): give it a whole step
        step pruning_compile "$PY" benchmarks/token_pruning.py --model vit_s16 --device cuda --dtype bf16 \
            --batch 128 --policies evit --keeps 1.0 0.7 --modes train --repeats 2 --compile ${COMPILE_MODE:+--compile-mode $COMPILE_MODE} \
            --output "$OUT/token_pruning_compile${COMPILE_MODE:+_$COMPILE_MODE}.md" ;;
    smoke)
        step smoke "$PY" -m pytest -q -p no:cacheprovider tests/kernels/test_attention_benchmark.py ;;
    profile_attention | profile_vit)
        step "$1" "$PY" benchmarks/attention_profile.py --what "${1#profile_}" ;;
    *)
        echo "unknown step $1" >&2
        status=1 ;;
    esac
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(env kernel_tests compile_full real_timm attention pruning)
for s in "${steps[@]}"; do run_step "$s"; done
[ -f "$OUT/attention.md" ] && "$PY" benchmarks/attention.py --goals "$OUT/attention.md" | tee "$OUT/goals.txt"
exit $status
