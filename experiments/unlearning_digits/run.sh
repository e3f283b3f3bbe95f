#!/usr/bin/env bash
# Machine unlearning on scikit-learn's digits (SalUn's classification protocol, Fan et al., ICLR 2024, scaled
# down): Retrain, FT, GA, RL, l1-sparse and SalUn for class-wise (digit 0) and random 10 % forgetting; the
# shipped presets unlearn_digits and unlearn_digits_random via salguide-train (SmallCNN width 32, batch 64,
# original model and Retrain: 15 epochs SGD lr 0.05 cosine; SalUn's mask: the 50 % most salient weights).
#   1. study: per (mode, method) a 3-value learning-rate grid on SEEDS (every run also reports Original and
#      Retrain, trained once per seed and cached);
#   2. per (mode, method) the lr with the smallest mean Avg.Gap over SEEDS (SalUn's rule), rerun on the fresh
#      CONFIRM_SEEDS (an out-of-sample check; CONFIRM_SEEDS= skips it);
#   3. summarise.py writes results_{classwise,random}.md/.json, sweep.json and the figures here and an offline
#      W&B table under RUNS.
# Usage: bash experiments/unlearning_digits/run.sh [RUNS]   (QUICK=1: 1 seed, 2 lrs, 1-2 epochs: a smoke test)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RUNS=${1:-${SALGUIDE_OUTPUT_DIR:-outputs}/unlearning_digits_study/$(date +%Y-%m-%d_%H-%M-%S)}
SEEDS=${SEEDS:-0,1,2}
CONFIRM_SEEDS=${CONFIRM_SEEDS-3,4,5,6,7}
OUT=${STUDY_OUT:-$HERE}
METHODS=(ft ga rl l1_sparse salun)
# learning-rate grids per (mode, method), chosen after a one-seed look so that each brackets its best value;
# RL and SalUn share a grid in each mode; their good learning rates differ ~40x between the two modes.
declare -A GRID=(
  [class:ft]=0.2,0.4,0.8 [class:ga]=1e-3,3e-3,1e-2 [class:rl]=0.01,0.02,0.03 [class:l1_sparse]=0.2,0.4,0.8
  [class:salun]=0.01,0.02,0.03
  [random:ft]=0.02,0.05,0.1 [random:ga]=0.02,0.05,0.1 [random:rl]=2.5e-4,5e-4,1e-3 [random:l1_sparse]=0.02,0.05,0.1
  [random:salun]=2.5e-4,5e-4,1e-3
)
declare -A PRESET=([class]=unlearn_digits [random]=unlearn_digits_random)
# per-run loggers: CSV only (summarise.py logs the W&B results table)
COMMON=(original.epochs=15 trainer=cpu logger=csv '~callbacks.progress' +trainer.enable_progress_bar=false
        print_table=false)
if [[ "${QUICK:-0}" == 1 ]]; then
  SEEDS=0 CONFIRM_SEEDS=1 OUT=${STUDY_OUT:-$(mktemp -d)}
  for k in "${!GRID[@]}"; do g=${GRID[$k]}; GRID[$k]=${g%%,*},${g##*,}; done   # the first and last value
  COMMON=(original.epochs=2 unlearning.epochs=1 model.net.width=8 "${COMMON[@]:1}")
fi
# One torch thread: on a shared machine two OpenMP threads spin against other jobs (up to 100x slower).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=offline WANDB_SILENT=true
train() { nice -n 19 salguide-train -m "$@" "${COMMON[@]}"; }
start=$SECONDS

for mode in class random; do
  for m in "${METHODS[@]}"; do
    train experiment="${PRESET[$mode]}" unlearning="$m" unlearning.optimizer.lr="${GRID[$mode:$m]}" seed="$SEEDS" \
      hydra.sweep.dir="$RUNS/study/$mode/$m"
  done
done
if [[ -n "$CONFIRM_SEEDS" ]]; then
  eval "$(python "$HERE/summarise.py" select "$RUNS/study" --out "$OUT")"   # sets LR_<mode>_<method>
  for mode in class random; do
    for m in "${METHODS[@]}"; do
      lr_var="LR_${mode}_$m"
      train experiment="${PRESET[$mode]}" unlearning="$m" unlearning.optimizer.lr="${!lr_var}" seed="$CONFIRM_SEEDS" \
        hydra.sweep.dir="$RUNS/confirm/$mode/$m"
    done
  done
fi
python "$HERE/summarise.py" results "$RUNS" --out "$OUT" --wall-seconds $((SECONDS - start))
echo "runs: $RUNS; tables and figures: $OUT"
