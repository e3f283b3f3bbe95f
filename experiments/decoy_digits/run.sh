#!/usr/bin/env bash
# DecoyDigits study (after RRR's DecoyMNIST): vanilla, RRR, saliency-guided training and clean training, the
# shipped presets decoy_{vanilla,rrr,sgt,clean} via salguide-train, over SEEDS; summarise.py writes
# results.md/.json and figures/ here and an offline W&B table under RUNS.
# Usage: bash experiments/decoy_digits/run.sh [RUNS]   (about 2-4 min on one thread; QUICK=1: 2 epochs, 1 seed)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RUNS=${1:-${SALGUIDE_OUTPUT_DIR:-outputs}/decoy_digits_study/$(date +%Y-%m-%d_%H-%M-%S)}
SEEDS=${SEEDS:-0,1,2}
OUT=${STUDY_OUT:-$HERE}
COMMON=(trainer=cpu logger=csv '~callbacks.progress' +trainer.enable_progress_bar=false)
if [[ "${QUICK:-0}" == 1 ]]; then
  SEEDS=0 OUT=${STUDY_OUT:-$(mktemp -d)} COMMON=(trainer.max_epochs=2 "${COMMON[@]}")
fi
# One torch thread: on a shared machine two OpenMP threads spin against other jobs (up to 100x slower).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=offline WANDB_SILENT=true
start=$SECONDS
# one sweep per preset: Hydra checks the other overrides against the config before it sweeps `experiment`
for v in vanilla rrr sgt clean; do
  nice -n 19 salguide-train -m experiment=decoy_$v seed="$SEEDS" "${COMMON[@]}" hydra.sweep.dir="$RUNS/$v"
done
python "$HERE/summarise.py" "$RUNS" --out "$OUT" --wall-seconds $((SECONDS - start))
echo "runs: $RUNS; tables and figures: $OUT"
