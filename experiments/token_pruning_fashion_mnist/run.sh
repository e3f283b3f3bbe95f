#!/usr/bin/env bash
# Token pruning on the 196-token Fashion-MNIST ViT (patch 2): EViT, ToMe and DynamicViT-style masking at
# keep 0.7 and 0.5 against the unpruned model; the shipped presets prune_fashion_mnist_{evit,tome,dynamicvit}.
# The protocol of EViT and DynamicViT (prune while fine-tuning a trained ViT) and ToMe's off-the-shelf use:
#   1. CPU throughput (training step and inference), each policy paired with the unpruned model in the same
#      process: benchmarks/token_pruning.py --model fashion_mnist (one torch thread);
#   2. the base: the unpruned ViT trained once (seed BASE_SEED, BASE_SIZE images, BASE_EPOCHS epochs);
#   3. fine-tune: from the base (init_from=), the unpruned model and each policy at each keep, FT_EPOCHS
#      epochs at FT_LR over SEEDS (data order and dropout differ per seed, the start is the same);
#   4. off-the-shelf: the base evaluated under each policy without a training step (seed BASE_SEED);
#   5. summarise.py writes results.md/.json/.csv, figures/ here and an offline W&B table under RUNS.
# Usage: bash experiments/token_pruning_fashion_mnist/run.sh [RUNS]   (QUICK=1: a smoke test, a few minutes)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUNS=${1:-${SALGUIDE_OUTPUT_DIR:-outputs}/token_pruning_fashion_mnist_study/$(date +%Y-%m-%d_%H-%M-%S)}
SEEDS=${SEEDS:-0,1,2}
KEEPS=${KEEPS:-0.7,0.5}
BASE_SEED=${BASE_SEED:-0}
OUT=${STUDY_OUT:-$HERE}
BENCH=(--steps 4 --warmup 1 --repeats 3 --batch 64)
BASE=(data.train_size="${BASE_SIZE:-10000}" trainer.max_epochs="${BASE_EPOCHS:-8}" model.optimizer.lr="${BASE_LR:-2e-3}")
FT=(data.train_size="${FT_SIZE:-5000}" trainer.max_epochs="${FT_EPOCHS:-1}" model.optimizer.lr="${FT_LR:-5e-4}")
# batch 64 (preset: 128): more steps from the images a CPU budget allows; per-run loggers CSV only
# (summarise.py logs the W&B results table)
COMMON=(data.test_size="${TEST_SIZE:-2000}" data.batch_size=64 trainer=cpu logger=csv '~callbacks.progress'
        +trainer.enable_progress_bar=false)
if [[ "${QUICK:-0}" == 1 ]]; then
  SEEDS=0 KEEPS=0.7 OUT=${STUDY_OUT:-$(mktemp -d)} BENCH=(--steps 1 --warmup 0 --repeats 1 --batch 8)
  BASE=(data.train_size=100 trainer.max_epochs=1) FT=(data.train_size=100 trainer.max_epochs=1)
  COMMON=(data.test_size=50 "${COMMON[@]:1}")
fi
# One torch thread: on a shared machine two OpenMP threads spin against other jobs (up to 100x slower).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=offline WANDB_SILENT=true
train() { nice -n 19 salguide-train -m "$@" "${COMMON[@]}"; }
start=$SECONDS

mkdir -p "$RUNS"
nice -n 19 python "$ROOT/benchmarks/token_pruning.py" --model fashion_mnist --threads 1 "${BENCH[@]}" \
  --json "$RUNS/throughput.json"
train experiment=prune_fashion_mnist_evit token_policy=none seed="$BASE_SEED" "${BASE[@]}" hydra.sweep.dir="$RUNS/base"
base=$RUNS/base/0/models/attention.safetensors
# one sweep per preset: Hydra checks the other overrides against the config before it sweeps `experiment`
train experiment=prune_fashion_mnist_evit token_policy=none seed="$SEEDS" init_from="$base" "${FT[@]}" \
  hydra.sweep.dir="$RUNS/fine-tune/none"
for p in evit tome dynamicvit; do
  train experiment=prune_fashion_mnist_$p callbacks.token_policy.policy.keep="$KEEPS" seed="$SEEDS" init_from="$base" "${FT[@]}" \
    hydra.sweep.dir="$RUNS/fine-tune/$p"
done
for p in none evit tome dynamicvit; do
  keep=(callbacks.token_policy.policy.keep="$KEEPS"); preset=$p
  [[ $p == none ]] && keep=(token_policy=none) preset=evit
  train experiment=prune_fashion_mnist_$preset "${keep[@]}" seed="$BASE_SEED" init_from="$base" "${FT[@]}" \
    +trainer.limit_train_batches=0 hydra.sweep.dir="$RUNS/off-the-shelf/$p"
done
python "$HERE/summarise.py" "$RUNS" --out "$OUT" --wall-seconds $((SECONDS - start))
echo "runs: $RUNS; tables and figures: $OUT"
