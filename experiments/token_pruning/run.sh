#!/usr/bin/env bash
# Token pruning / merging on the digits ViT (32 px, patch 4: 64 tokens + CLS): accuracy at keep 0.7 and 0.5 of
# EViT, DynamicViT-style key masking and ToMe (the shipped presets prune_digits_{evit,dynamicvit,tome}) against
# the unpruned ViT (prune_digits_evit with token_policy=none), each trained from scratch per seed with the
# policy active in training and at test, plus CPU throughput (benchmarks/token_pruning.py --model digits).
# The keep rate warms up from 1 over the first third of training, as in EViT: 30 epochs x 23 batches / 3 = 230
# steps. summarise.py writes results.md/.json and results_accuracy.png here and an offline W&B table under RUNS.
# Usage: bash experiments/token_pruning/run.sh [RUNS]   (~15 min per seed on one thread; QUICK=1: a smoke test;
#        SKIP_THROUGHPUT=1: accuracy only, e.g. on a shared machine)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUNS=${1:-${SALGUIDE_OUTPUT_DIR:-outputs}/token_pruning_study/$(date +%Y-%m-%d_%H-%M-%S)}
SEEDS=${SEEDS:-0,1,2}
KEEPS=${KEEPS:-0.7,0.5}
OUT=${STUDY_OUT:-$HERE}
BENCH=(--batch 128 --steps 30 --warmup 5 --repeats 3)
EPOCHS=30 WARMUP=230
COMMON=(trainer=cpu logger=csv '~callbacks.progress' +trainer.enable_progress_bar=false)
if [[ "${QUICK:-0}" == 1 ]]; then
  SEEDS=0 OUT=${STUDY_OUT:-$(mktemp -d)} BENCH=(--batch 8 --steps 1 --warmup 0 --repeats 1)
  EPOCHS=2 WARMUP=15
fi
# One torch thread: on a shared machine two OpenMP threads spin against other jobs (up to 100x slower).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=offline WANDB_SILENT=true
train() { nice -n 19 salguide-train -m "$@"; }
start=$SECONDS

mkdir -p "$RUNS"
train experiment=prune_digits_evit token_policy=none seed="$SEEDS" trainer.max_epochs=$EPOCHS "${COMMON[@]}" \
  hydra.sweep.dir="$RUNS/none"
# one sweep per preset: Hydra checks the other overrides against the config before it sweeps `experiment`
for p in evit dynamicvit tome; do
  train experiment=prune_digits_$p callbacks.token_policy.policy.keep="$KEEPS" callbacks.token_policy.warmup_steps=$WARMUP seed="$SEEDS" \
    trainer.max_epochs=$EPOCHS "${COMMON[@]}" hydra.sweep.dir="$RUNS/$p"
done
train_minutes=$(( (SECONDS - start) / 60 ))
if [[ "${SKIP_THROUGHPUT:-0}" != 1 ]]; then  # after training: all cores (torch's choice), as recorded
  nice -n 19 env -u OMP_NUM_THREADS python "$ROOT/benchmarks/token_pruning.py" --model digits "${BENCH[@]}" \
    --json "$RUNS/throughput.json"
fi
python "$HERE/summarise.py" "$RUNS" --out "$OUT" --wall-seconds $((SECONDS - start))
echo "runs: $RUNS; tables and figures: $OUT (training: ${train_minutes} min)"
