"""Issue 83's cost by the node: `cpdebug bisect --onnx M -b ort,ort-cpu-fp16` against Polygraphy's mark-all on ONNX's
own zoo files, in one run.

The files are the ones onnx ships for its backend tests (`onnx/backend/test/data/light/light_*.onnx`, real
architectures with their weights made by ConstantOfShape: nothing downloaded). For each file, `--repeat` times in
turn:
  polygraphy  `polygraphy run --onnxrt M --onnx-outputs mark all` (every tensor of one ONNX Runtime run);
  bisect      `cpdebug bisect --onnx M -b ort,ort-cpu-fp16` with a fresh cache folder (every tensor of the
              reference, of the FP16 candidate on its own values and on the reference's: propagated and local error).
The table gives the medians (wall, peak RSS of the child), the ratio and the bisect's exit code. The issue's bar:
DenseNet-121 (1,746 nodes) within 3x Polygraphy's wall.

    python benchmarks/onnx_zoo_bisect.py [--models densenet121,resnet50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bisect_scale import measure  # (wall s, peak RSS GiB, exit code, CPU s) of one child process


def zoo_file(name: str) -> Path:
    import onnx

    path = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"
    if not path.is_file():
        sys.exit(f"no {path.name} in this onnx ({onnx.__version__}): pick from "
                 + ", ".join(p.stem.removeprefix("light_") for p in path.parent.glob("light_*.onnx")))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="densenet121,resnet50,inception_v2")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import onnx

    polygraphy = shutil.which("polygraphy") or sys.exit("polygraphy is not on PATH (pip install polygraphy)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="cpdebug_zoo_") as tmp:
        for name in args.models.split(","):
            path = zoo_file(name)
            nodes = len(onnx.load(str(path), load_external_data=False).graph.node)
            poly, bis, codes = [], [], set()
            for k in range(args.repeat):
                poly.append(measure([polygraphy, "run", "--onnxrt", str(path), "--onnx-outputs", "mark", "all"]))
                env_cache = os.path.join(tmp, f"cache_{name}_{k}")  # fresh: the FP16 conversions are made again
                os.environ["CPDEBUG_CACHE_DIR"] = env_cache
                bis.append(measure([sys.executable, "-m", "cp_debug.cli.main", "bisect", "--onnx", str(path),
                                    "-b", "ort,ort-cpu-fp16", "--json", os.path.join(tmp, f"{name}.json")]))
                codes.add(bis[-1][2])
                print(f"  {name} run {k + 1}: polygraphy {poly[-1][0]:.2f} s, bisect {bis[-1][0]:.2f} s "
                      f"(exit {bis[-1][2]}), load {os.getloadavg()[0]:.2f}", flush=True)
            pw, bw = statistics.median(p[0] for p in poly), statistics.median(b[0] for b in bis)
            pm, bm = statistics.median(p[1] for p in poly), statistics.median(b[1] for b in bis)
            rows.append((name, nodes, pw, bw, bw / pw, pm, bm, ",".join(map(str, sorted(codes)))))
    print(f"\n{os.cpu_count()} cores; medians of {args.repeat} runs; bisect with a fresh cache each run")
    print("| model | nodes | polygraphy mark-all | cpdebug bisect | ratio | peak RSS polygraphy / bisect | exit |")
    print("|---|---|---|---|---|---|---|")
    for name, nodes, pw, bw, ratio, pm, bm, codes in rows:
        print(f"| {name} | {nodes:,} | {pw:.2f} s | {bw:.2f} s | {ratio:.2f}x | {pm:.2f} / {bm:.2f} GB | {codes} |")


if __name__ == "__main__":
    main()
