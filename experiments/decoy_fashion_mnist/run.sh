#!/usr/bin/env bash
# Decoy Fashion-MNIST study (RRR's DecoyMNIST protocol on Fashion-MNIST): vanilla, RRR, saliency-guided
# training, clean; the shipped presets decoy_fashion_mnist_{vanilla,rrr,sgt,clean} via salguide-train.
#   1. tune RRR's weight and SGT's weight / fraction on the validation split (seed 0);
#   2. run the four variants with the chosen settings over SEEDS;
#   3. summarise.py writes results.md/.json/.csv, figures/ here and an offline W&B table under RUNS.
# Usage: bash experiments/decoy_fashion_mnist/run.sh [RUNS]   (QUICK=1: a smoke test, ~5 min)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RUNS=${1:-${SALGUIDE_OUTPUT_DIR:-outputs}/decoy_fashion_mnist_study/$(date +%Y-%m-%d_%H-%M-%S)}
SEEDS=${SEEDS:-0,1,2}
OUT=${STUDY_OUT:-$HERE}
RRR_GRID=0.1,1,10,100,1000 SGT_WEIGHTS=1,10,100,1000 SGT_FRACTIONS=0.1,0.5,0.9
COMMON=(data.train_size="${TRAIN_SIZE:-20000}" trainer=cpu '~callbacks.progress' +trainer.enable_progress_bar=false)
if [[ "${QUICK:-0}" == 1 ]]; then
  SEEDS=0 RRR_GRID=1,10 SGT_WEIGHTS=1 SGT_FRACTIONS=0.5; OUT=${STUDY_OUT:-$(mktemp -d)}
  COMMON=(data.train_size=1000 data.test_size=500 trainer.max_epochs=1 "${COMMON[@]:1}")
fi
# One torch thread: on a shared machine two OpenMP threads spin against other jobs (up to 100x slower).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=offline WANDB_SILENT=true
train() { nice -n 19 salguide-train -m "$@" "${COMMON[@]}"; }
start=$SECONDS

train experiment=decoy_fashion_mnist_rrr callbacks.input_loss.input_loss.weight="$RRR_GRID" seed=0 hydra.sweep.dir="$RUNS/tune/rrr"
train experiment=decoy_fashion_mnist_sgt callbacks.input_loss.input_loss.weight="$SGT_WEIGHTS" callbacks.input_loss.input_loss.fraction="$SGT_FRACTIONS" seed=0 \
  hydra.sweep.dir="$RUNS/tune/sgt"
eval "$(python "$HERE/summarise.py" select "$RUNS/tune" --out "$OUT")"   # sets RRR_ARGS and SGT_ARGS
echo "chosen on validation: rrr $RRR_ARGS; sgt $SGT_ARGS"

# one sweep per preset: Hydra checks the other overrides against the config before it sweeps `experiment`
for v in vanilla clean; do train experiment=decoy_fashion_mnist_$v seed="$SEEDS" hydra.sweep.dir="$RUNS/final/$v"; done
# shellcheck disable=SC2086  # the chosen overrides are separate words
train experiment=decoy_fashion_mnist_rrr $RRR_ARGS seed="$SEEDS" hydra.sweep.dir="$RUNS/final/rrr"
# shellcheck disable=SC2086
train experiment=decoy_fashion_mnist_sgt $SGT_ARGS seed="$SEEDS" hydra.sweep.dir="$RUNS/final/sgt"
python "$HERE/summarise.py" results "$RUNS/final" --out "$OUT" --wall-seconds $((SECONDS - start))
echo "runs: $RUNS; tables and figures: $OUT"
