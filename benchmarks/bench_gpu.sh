#!/usr/bin/env bash
# GPU tables for the README in one call: per-stage latency of CenterPoint on awml-base (torch CUDA FP32/TF32/FP16,
# ORT CUDA FP32/FP16), then, if nuscenes-devkit is importable, nuScenes mAP/NDS of the demo per GPU backend.
#
#   bash benchmarks/bench_gpu.sh [OUT_DIR]      # env: PRESET (awml-base), REPEAT (20), WARMUP (3), N (20 eval scenes),
#                                               #      EVAL (1: also the mAP table), CPDEBUG (python3 -m cp_debug.cli.main),
#                                               #      BENCH_BACKENDS / EVAL_BACKENDS (space-separated specs to try)
#
# Device machine, repo root, PYTHONPATH=$PWD. ORT CUDA needs onnxruntime-gpu; the eval table needs nuscenes-devkit
# installed as .ci/run does (pip install --no-deps nuscenes-devkit==1.2.0 plus the `eval` extra), e.g. carried
# as wheels. Backends that cannot run there are listed as not run, never silently left out. Markdown on stdout.
set -u
OUT=${1:-cpdebug-out/bench-gpu}
PRESET=${PRESET:-awml-base}
REPEAT=${REPEAT:-20}
WARMUP=${WARMUP:-3}
N=${N:-20}
EVAL=${EVAL:-1}
CPDEBUG=${CPDEBUG:-python3 -m cp_debug.cli.main}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"

# Keep the backends this machine can run; say why the others are not run.
available() {
  python3 - "$@" <<'PY'
import sys
from cp_debug.backends.factory import check_available
from cp_debug.errors import CpDebugError
ok = []
for spec in sys.argv[1:]:
    try:
        check_available(spec)
        ok.append(spec)
    except CpDebugError as err:
        print(f"not run: {spec}: {err}", file=sys.stderr)
print(",".join(ok))
PY
}

BENCH=$(available ${BENCH_BACKENDS:-torch-cuda torch-cuda-tf32 torch-cuda-fp16 ort-cuda ort-cuda-fp16})
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/GPU: /'
if [ -n "$BENCH" ]; then
  $CPDEBUG bench --preset "$PRESET" --backends "$BENCH" --repeat "$REPEAT" --warmup "$WARMUP" \
    --json "$OUT/bench.json" --csv "$OUT/bench.csv" --quiet > "$OUT/bench.txt" 2> "$OUT/bench.err"
  echo "bench exit $?"
  python3 - "$OUT/bench.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
rows = d["rows"]
backends = list(dict.fromkeys(r["backend"] for r in rows))
stages = list(dict.fromkeys(r["stage"] for r in rows))
by = {(r["backend"], r["stage"]): r for r in rows}
print(f"\n### Latency per stage, {d['preset']}, {d['num_points']} points "
      f"(ms, median / p90 of {d['repeat']} runs after {d['warmup']} warm-up)\n")
print("| stage | " + " | ".join(backends) + " |")
print("|---|" + "---:|" * len(backends))
for s in stages:
    print(f"| {s} | " + " | ".join(f"{by[b, s]['median_ms']:.2f} / {by[b, s]['p90_ms']:.2f}" for b in backends) + " |")
mem = lambda v: "—" if v is None else f"{v:.0f}"
print("| peak torch GPU MB | " + " | ".join(mem(by[b, 'total']['peak_torch_gpu_mb']) for b in backends) + " |")
print("| GPU used MB | " + " | ".join(mem(by[b, 'total']['gpu_used_mb']) for b in backends) + " |")
for b, notes in d.get("notes", {}).items():
    for n in notes:
        print(f"- {b}: {n}")
PY
else
  echo "no GPU backend can run here: bench not run"
fi

if [ "$EVAL" = 1 ]; then
  if ! python3 -c "import nuscenes.eval.detection.algo" 2>/dev/null; then
    echo "eval not run: nuscenes-devkit is not importable here (see the header)"
    exit 0
  fi
  EVB=$(available ${EVAL_BACKENDS:-torch-cuda torch-cuda-fp16 ort-cuda ort-cuda-fp16})
  if [ -z "$EVB" ]; then echo "eval not run: no GPU backend"; exit 0; fi
  $CPDEBUG eval --preset "${EVAL_PRESET:-demo}" --backends "torch,$EVB" --n "$N" --json "$OUT/eval.json" --quiet \
    > "$OUT/eval.txt" 2> "$OUT/eval.err"
  echo "eval exit $?"
  python3 - "$OUT/eval.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
m = d["metrics"]
print(f"\n### nuScenes metrics, {d['preset']} ({d['weights']}), {d['settings']['num_scenes']} held-out scenes\n")
print("| backend | mAP | NDS | mATE | mASE | mAOE | mAVE | boxes | missing / extra vs torch |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
for b in d["backends"]:
    x = m[b]
    n = sum(len(v) for v in d["detections"][b].values())
    t = d["diffs"].get(b, {}).get("total")
    me = f"{t['missing']} / {t['extra']}" if t else "(reference)"
    print(f"| {b} | {x['mAP']:.4f} | {x['NDS']:.4f} | {x['mATE']:.3f} | {x['mASE']:.3f} | {x['mAOE']:.3f} | "
          f"{x['mAVE']:.3f} | {n} | {me} |")
for b, ds in d["diagnoses"].items():
    for g in ds:
        print(f"- {b}: {g['message']}")
PY
fi
