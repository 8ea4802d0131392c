#!/usr/bin/env bash
# Reproduce the shipped demo checkpoint (cp_debug/models/centerpoint/weights/centerpoint_demo.pth) with one
# command: 4000 synthetic training scenes (seeds 0..3999), then CenterPoint training on them, then the
# nuScenes center-distance mAP on 200 held-out scenes (seeds from 1000000). Trained on synthetic scenes only.
#
#   benchmarks/train_demo.sh [OUT_DIR]          # env: DEVICE (cuda), STEPS, BATCH, LR, WORKERS, CPDEBUG
#
# The shipped weights came from these two commands on one H100 (16 cores): scenes 37 s, training 348 s
# (2700 steps x 16 scenes), held-out mAP 0.916. On a CPU it runs, but for many hours.
set -euo pipefail
OUT=${1:-cpdebug-out/train-demo}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-2700}
BATCH=${BATCH:-16}
LR=${LR:-1e-3}
WORKERS=${WORKERS:-$(nproc)}
CPDEBUG=${CPDEBUG:-cpdebug}
mkdir -p "$OUT"
$CPDEBUG scenes --preset demo --n 4000 --seed 0 --workers "$WORKERS" --out "$OUT/scenes" --quiet
$CPDEBUG train --preset demo --scenes "$OUT/scenes" --steps "$STEPS" --batch-size "$BATCH" --lr "$LR" \
  --device "$DEVICE" --workers "$WORKERS" --val-scenes 200 --val-every 500 --half \
  --out "$OUT/centerpoint_demo.pth" --log "$OUT/train_log.json"
