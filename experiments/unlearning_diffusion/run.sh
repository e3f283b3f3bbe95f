#!/usr/bin/env bash
# Generative unlearning study (issue 13, point 6): forget digit 0 from the 16x16 class-conditional DDPM with
# SalUn, ANT, ESD-style, FT and Retrain over SEEDS; the original and Retrain DDPMs of each seed are trained
# once and cached, every method reuses them. summarise.py writes results.md/.json (mean ± std) and a
# sample-grid figure here.
# Usage: bash experiments/unlearning_diffusion/run.sh [RUNS]   (QUICK=1: a smoke test with tiny settings)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RUNS=${1:-${SALGUIDE_OUTPUT_DIR:-outputs}/unlearning_diffusion_study/$(date +%Y-%m-%d_%H-%M-%S)}
SEEDS=${SEEDS:-0,1,2}
OUT=${STUDY_OUT:-$HERE}
COMMON=(experiment=unlearn_ddpm_digits trainer=cpu '~callbacks.progress' +trainer.enable_progress_bar=false print_table=false)
if [[ "${QUICK:-0}" == 1 ]]; then
  SEEDS=0; OUT=${STUDY_OUT:-$(mktemp -d)}
  COMMON+=(original.epochs=1 judge.epochs=1 generation.per_class=4 generation.steps=3 diffusion_unlearning.epochs=1)
fi
# One torch thread: on a shared machine two OpenMP threads spin against other jobs.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=offline WANDB_SILENT=true
start=$SECONDS
# retrain first: it trains (and caches) the original and the Retrain DDPM of every seed
for m in retrain salun ant esd ft; do
  nice -n 19 salguide-train -m "${COMMON[@]}" diffusion_unlearning=$m seed="$SEEDS" hydra.sweep.dir="$RUNS/$m"
done
python "$HERE/summarise.py" "$RUNS" --out "$OUT" --wall-seconds $((SECONDS - start))
echo "runs: $RUNS; tables and figures: $OUT"
