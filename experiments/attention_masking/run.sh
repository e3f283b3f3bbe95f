#!/usr/bin/env bash
# Attention-guided masking on digits: masked reconstruction (SimMIM-style) + CLS cross-entropy with random,
# AttMask high / low / hint and ACMIL masks; the shipped preset mim_digits with attention_masking=<mode>, over
# SEEDS. The study's setting: batch 16, mask ratio ramped linearly from 0.1 to 0.5 over the first third of
# training (20 epochs x 90 batches / 3 = 600 steps), EMA teacher decay 0.99 (the presets' default).
# summarise.py re-evaluates each run's saved student and teacher (models/mim.safetensors, teacher.safetensors)
# on the test split and writes results.md/.json, results_bars.png and masks.png here, and an offline W&B
# table under RUNS.
# Usage: bash experiments/attention_masking/run.sh [RUNS]   (~10 min per seed on one thread; QUICK=1: a smoke test)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RUNS=${1:-${SALGUIDE_OUTPUT_DIR:-outputs}/attention_masking_study/$(date +%Y-%m-%d_%H-%M-%S)}
SEEDS=${SEEDS:-0,1,2}
MODES=${MODES:-random attmask_high attmask_low attmask_hint acmil}
OUT=${STUDY_OUT:-$HERE}
EPOCHS=20 RAMP=600
COMMON=(data.batch_size=16 callbacks.attention_masking.ratio_start=0.1 trainer=cpu logger=csv '~callbacks.progress'
        +trainer.enable_progress_bar=false)
if [[ "${QUICK:-0}" == 1 ]]; then
  SEEDS=0 EPOCHS=1 RAMP=30 OUT=${STUDY_OUT:-$(mktemp -d)}
fi
# One torch thread: on a shared machine two OpenMP threads spin against other jobs (up to 100x slower).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=offline WANDB_SILENT=true
start=$SECONDS
for m in $MODES; do
  nice -n 19 salguide-train -m experiment=mim_digits attention_masking="$m" callbacks.attention_masking.ratio_steps=$RAMP \
    trainer.max_epochs=$EPOCHS seed="$SEEDS" "${COMMON[@]}" hydra.sweep.dir="$RUNS/$m"
done
python "$HERE/summarise.py" "$RUNS" --out "$OUT" --wall-seconds $((SECONDS - start))
echo "runs: $RUNS; tables and figures: $OUT"
