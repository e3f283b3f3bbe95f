#!/usr/bin/env bash
# Attention losses against shortcut backgrounds (synthetic scenes): vanilla, concentration, background
# suppression (BAS) and an oracle (background erased from the input: an upper bound, not a loss); the shipped
# presets attn_scenes_{vanilla,concentration,bas,oracle} via salguide-train.
#   1. select: vanilla and each candidate loss weight on seed SELECT_SEED, scored on the validation split
#      (shuffled backgrounds; the test split is not read); per loss the best validation accuracy wins (ties ->
#      smaller weight);
#   2. the four variants over SEEDS with the chosen weights;
#   3. summarise.py re-evaluates the runs' saved models (shuffled and in-distribution test accuracy, training
#      accuracy, CLS attention mass on the object) and writes results.md/.json, accuracy.png,
#      attention_maps.png and selection.md/.json here, and an offline W&B table under RUNS.
# Usage: bash experiments/attention_scenes/run.sh [RUNS]   (~30 min per seed on one quiet thread, selection
#        included; SKIP_SELECT=1 takes the presets' weights; QUICK=1: 1 epoch, a smoke test)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RUNS=${1:-${SALGUIDE_OUTPUT_DIR:-outputs}/attention_scenes_study/$(date +%Y-%m-%d_%H-%M-%S)}
SEEDS=${SEEDS:-0,1,2}
SELECT_SEED=${SELECT_SEED:-0}
CONC_GRID=${CONC_GRID:-1,5,20} BAS_GRID=${BAS_GRID:-5,20,50}
OUT=${STUDY_OUT:-$HERE}
COMMON=(trainer=cpu logger=csv '~callbacks.progress' +trainer.enable_progress_bar=false)
if [[ "${QUICK:-0}" == 1 ]]; then
  SEEDS=0 CONC_GRID=1,5 BAS_GRID=5 OUT=${STUDY_OUT:-$(mktemp -d)} COMMON=(trainer.max_epochs=1 "${COMMON[@]}")
fi
# One torch thread: on a shared machine two OpenMP threads spin against other jobs (up to 100x slower).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=offline WANDB_SILENT=true
train() { nice -n 19 salguide-train -m "$@" "${COMMON[@]}"; }
start=$SECONDS

CONC_ARGS="" BAS_ARGS=""
if [[ "${SKIP_SELECT:-0}" != 1 ]]; then
  train experiment=attn_scenes_vanilla seed="$SELECT_SEED" hydra.sweep.dir="$RUNS/select/vanilla"
  train experiment=attn_scenes_concentration callbacks.attention_loss.attention_loss.weight="$CONC_GRID" seed="$SELECT_SEED" \
    hydra.sweep.dir="$RUNS/select/concentration"
  train experiment=attn_scenes_bas callbacks.attention_loss.attention_loss.weight="$BAS_GRID" seed="$SELECT_SEED" hydra.sweep.dir="$RUNS/select/bas"
  eval "$(python "$HERE/summarise.py" select "$RUNS/select" --out "$OUT")"   # sets CONC_ARGS and BAS_ARGS
  echo "chosen on validation: concentration $CONC_ARGS; bas $BAS_ARGS"
fi
# one sweep per preset: Hydra checks the other overrides against the config before it sweeps `experiment`
for v in vanilla oracle; do train experiment=attn_scenes_$v seed="$SEEDS" hydra.sweep.dir="$RUNS/final/$v"; done
# shellcheck disable=SC2086  # the chosen overrides are separate words
train experiment=attn_scenes_concentration $CONC_ARGS seed="$SEEDS" hydra.sweep.dir="$RUNS/final/concentration"
# shellcheck disable=SC2086
train experiment=attn_scenes_bas $BAS_ARGS seed="$SEEDS" hydra.sweep.dir="$RUNS/final/bas"
python "$HERE/summarise.py" results "$RUNS/final" --out "$OUT" --wall-seconds $((SECONDS - start))
echo "runs: $RUNS; tables and figures: $OUT"
