#!/usr/bin/env bash
# The stand-in segmentation comparison of docs/evaluations.md ("normae segment", measured on the stand-in):
# UperNet on Fashion-MNIST canvases from the cpu scale's pre-trainings (MAE and NoR-MAE, seeds 0-2) and
# from random init. Usage: bench/segment_standin.sh RUNS OUT [EPOCHS TRAIN_SAMPLES]
#   RUNS: the cpu scale's results/runs (snakemake --config scale=cpu); OUT: where the segment runs go.
# Defaults: 3 epochs on 768 canvases (about 3 minutes a run on one core); the long check in docs/measurements.md used
# 8 epochs on 2,048 canvases (seed 0). Each run's summary.json holds miou and the trivial floor.
set -euo pipefail
runs="${1:?RUNS: results/runs of the cpu scale}" out="${2:?OUT: a folder for the segment runs}"
epochs="${3:-3}" samples="${4:-768}"
normae="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/normae"
[ -x "$normae" ] || normae=normae
common=(--model vit_micro --patch-size 4 --epochs "$epochs" --warmup-epochs 0.5 --batch-size 32 --blr 8e-3
    --train-samples "$samples" --eval-samples 400 --decoder-channels 64 --eval-every "$epochs" --num-workers 0
    --log-every 8 --threads 1)
for seed in 0 1 2; do
    for init in "$runs"/fmnist-vit_micro-p4-mae-mr0.75-ep1-s"$seed"-* \
        "$runs"/fmnist-vit_micro-p4-nor_mae-lam0.0025-mr0.75-ep1-s"$seed"-* none; do
        "$normae" segment --init "$init" --seed "$seed" "${common[@]}" --out "$out/$(basename "$init")-seg-s$seed"
    done
done
