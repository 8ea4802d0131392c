"""Issue 86's FP8 lanes side by side: `ort-cpu-fp8` and, where onnxruntime-gpu runs, `ort-cuda-fp8`, on the small CNN
of tests/backends/test_ort_fp8.py (healthy, and with a weight outlier that sets its second conv's per-tensor scale);
beside them the emulated `ort-*-nvfp4` and `ort-*-mxfp8` (float32 ONNX on either device: not run on FP4 hardware).

    python benchmarks/fp8_lanes.py [--out DIR]

For each lane and net: `cpdebug bisect --onnx NET.onnx -b REF,LANE --json` (REF: ort on the lane's device), its exit
code, wall time, the output's relative RMS error against the reference and the root cause; the card's name on CUDA.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.backends.test_ort_fp8 import _export, _net  # noqa: E402 - the tests' own nets, one home


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import onnxruntime as ort

    out = Path(args.out or tempfile.mkdtemp(prefix="cpdebug_fp8_"))
    out.mkdir(parents=True, exist_ok=True)
    nets = {name: _export(_net(name == "fault"), out / f"{name}.onnx") for name in ("healthy", "fault")}
    lanes = [("ort", f"ort-cpu-{p}") for p in ("fp8", "nvfp4", "mxfp8")]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        card = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True).stdout.strip()
        print(f"CUDA: {card}")
        lanes += [("ort-cuda", f"ort-cuda-{p}") for p in ("fp8", "nvfp4", "mxfp8")]
    print("| lane | net | exit | wall | output rel. RMSE | root cause |")
    print("|---|---|---|---|---|---|")
    for ref, lane in lanes:
        for name, path in nets.items():
            report = out / f"{lane}_{name}.json"
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "cp_debug.cli.main", "bisect", "--onnx", str(path), "-b",
                                   f"{ref},{lane}", "--json", str(report), "-q"], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if not report.is_file():
                print(f"| {lane} | {name} | {proc.returncode} | {wall:.1f} s | — | {proc.stderr.strip()[-200:]} |")
                continue
            r = json.loads(report.read_text())
            y = next((x for x in r["results"][lane] if x["probe"] == "y"), {})
            root = (r.get("root_cause") or {}).get(lane) or {}
            print(f"| {lane} | {name} | {proc.returncode} | {wall:.1f} s | {y.get('rel_rmse', float('nan')):.3g} | "
                  f"{root.get('probe', '—')} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
