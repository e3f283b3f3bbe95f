#!/usr/bin/env bash
# Token pruning on the 196-token Fashion-MNIST ViT (patch 2): EViT, ToMe and DynamicViT-style masking at
# keep 0.7 and 0.5 against the unpruned model; the shipped presets prune_fashion_mnist_{evit,tome,dynamicvit}.
#   1. CPU throughput (training step and inference), each policy paired with the unpruned model in the same
#      process: benchmarks/token_pruning.py --model fashion_mnist (one torch thread);
#   2. accuracy: the unpruned model (token_policy=none) and each policy at each keep over SEEDS;
#   3. summarise.py writes results.md/.json/.csv, figures/ here and an offline W&B table under RUNS.
# Usage: bash experiments/token_pruning_fashion_mnist/run.sh [RUNS]   (QUICK=1: a smoke test, ~2 min)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUNS=${1:-${SALGUIDE_OUTPUT_DIR:-outputs}/token_pruning_fashion_mnist_study/$(date +%Y-%m-%d_%H-%M-%S)}
SEEDS=${SEEDS:-0,1,2}
KEEPS=${KEEPS:-0.7,0.5}
OUT=${STUDY_OUT:-$HERE}
BENCH=(--steps 4 --warmup 1 --repeats 3 --batch 64)
# batch 32 and lr 2e-3 (preset: 128, 1e-3): more steps from the few images a CPU budget allows; per-run
# loggers CSV only (summarise.py logs the W&B results table)
COMMON=(data.train_size="${TRAIN_SIZE:-1200}" data.test_size="${TEST_SIZE:-2000}" classify.epochs="${EPOCHS:-4}"
        data.batch_size=32 classify.lr=2e-3 trainer=cpu logger=csv '~callbacks.progress' +trainer.enable_progress_bar=false)
if [[ "${QUICK:-0}" == 1 ]]; then
  SEEDS=0 KEEPS=0.7 OUT=${STUDY_OUT:-$(mktemp -d)} BENCH=(--steps 1 --warmup 0 --repeats 1 --batch 8)
  COMMON=(data.train_size=100 data.test_size=50 classify.epochs=1 "${COMMON[@]:3}")
fi
# One torch thread: on a shared machine two OpenMP threads spin against other jobs (up to 100x slower).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=offline WANDB_SILENT=true
train() { nice -n 19 salguide-train -m "$@" "${COMMON[@]}"; }
start=$SECONDS

mkdir -p "$RUNS"
nice -n 19 python "$ROOT/benchmarks/token_pruning.py" --model fashion_mnist --threads 1 "${BENCH[@]}" \
  --json "$RUNS/throughput.json"
# one sweep per preset: Hydra checks the other overrides against the config before it sweeps `experiment`
train experiment=prune_fashion_mnist_evit token_policy=none seed="$SEEDS" hydra.sweep.dir="$RUNS/none"
for p in evit tome dynamicvit; do
  train experiment=prune_fashion_mnist_$p token_policy.keep="$KEEPS" seed="$SEEDS" hydra.sweep.dir="$RUNS/$p"
done
python "$HERE/summarise.py" "$RUNS" --out "$OUT" --wall-seconds $((SECONDS - start))
echo "runs: $RUNS; tables and figures: $OUT"
