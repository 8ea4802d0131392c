#!/usr/bin/env bash
# Train the TransFusion-L demo checkpoint (preset transfusion-demo: CenterPoint demo's grid, 100 proposals, one
# decoder layer) on the synthetic scenes, as benchmarks/train_demo.sh does for CenterPoint: N_SCENES training scenes
# (seeds 0..N-1, written with the demo preset: same range, 5 columns), `cpdebug train --recipe transfusion`, then the
# nuScenes center-distance mAP on VAL held-out scenes (seeds from 1000000) of the re-loaded float16 checkpoint.
# Trained on synthetic scenes only.
#
#   benchmarks/train_transfusion_demo.sh [OUT_DIR]   # env: DEVICE (cuda), N_SCENES, STEPS, BATCH, LR, WORKERS, VAL,
#                                                    #      VAL_EVERY, CPDEBUG
#
# Not yet run on a GPU. CenterPoint's demo (same grid and SECOND backbone) took 348 s for 2700 steps x 16 on one H100;
# TransFusion adds one decoder layer over 100 queries and a CPU Hungarian match per scene, so 3000 steps x 16
# (12 epochs of 4000 scenes) is expected to take roughly 7-10 min. On a CPU: ~14 s a step at batch 1 (smoke run).
# A CPU smoke run (3 min): DEVICE=cpu N_SCENES=20 STEPS=10 BATCH=1 VAL=3 VAL_EVERY=0 WORKERS=1 \
#   benchmarks/train_transfusion_demo.sh /tmp/tft-smoke
set -euo pipefail
OUT=${1:-cpdebug-out/train-transfusion-demo}
DEVICE=${DEVICE:-cuda}
N_SCENES=${N_SCENES:-4000}
STEPS=${STEPS:-3000}
BATCH=${BATCH:-16}
LR=${LR:-1e-3}
WORKERS=${WORKERS:-$(nproc)}
VAL=${VAL:-200}
VAL_EVERY=${VAL_EVERY:-1000}
CPDEBUG=${CPDEBUG:-cpdebug}
mkdir -p "$OUT"
if [ ! -f "$OUT/scenes/infos.pkl" ]; then  # the scenes of an earlier run are reused
  $CPDEBUG scenes --preset demo --n "$N_SCENES" --seed 0 --workers "$WORKERS" --out "$OUT/scenes" --quiet
fi
$CPDEBUG train --recipe transfusion --preset transfusion-demo --scenes "$OUT/scenes" --steps "$STEPS" \
  --batch-size "$BATCH" --lr "$LR" --device "$DEVICE" --workers "$WORKERS" --val-scenes "$VAL" \
  --val-every "$VAL_EVERY" --half --out "$OUT/transfusion_demo.pth" --log "$OUT/train_log.json"
