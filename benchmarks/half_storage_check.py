"""Does the CPU's float16 emulation compute what the GPU computes? FP16 ONNX pairs run three ways on the same
held-out frames: ORT CUDA (float16 kernels), ORT CPU with float16 storage emulated (`precision.half_storage`, the
default) and ORT CPU native (its own float16 handling); each head output's rel. RMSE against the FP32 pair.

Run on the GPU machine from the repo root (onnxruntime-gpu installed):
    python benchmarks/half_storage_check.py --fix DIR [--fix DIR ...] [--preset demo [--random-weights]] [--n 2]
--fix DIR: a written fix (its fp32.* pair is the reference; the fix and the plain FP16 conversion are candidates).
--preset: the preset's FP32 pair exported here and converted to FP16 whole (plain), as a further candidate.
Prints one row per candidate and output, then the worst-output summary: where CUDA's error is finite, the ratio
emulated / CUDA should be near 1 and native / CUDA may be far from it; where CUDA overflows, emulation should too.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _pairs(args, tmp: Path):
    import onnx

    from cp_debug.precision.fp16 import convert_to_fp16
    from cp_debug.recipes.centerpoint.export import BACKBONE_FILE, VOXEL_ENCODER_FILE, export_onnx

    files = (VOXEL_ENCODER_FILE, BACKBONE_FILE)
    for d in args.fix:
        d = Path(d)
        ref = [onnx.load(str(d / f"fp32.{f}")) for f in files]
        yield f"{d.name}: fix", args.fix_preset, ref, [onnx.load(str(d / f)) for f in files]
        yield f"{d.name}: plain", args.fix_preset, ref, [convert_to_fp16(m) for m in ref]
    if args.preset:
        from cp_debug.models.centerpoint.presets import get_preset
        from cp_debug.models.centerpoint.source import load_model

        cfg = get_preset(args.preset)
        model = load_model(args.preset, None, 0, random_weights=args.random_weights).model
        res = export_onnx(model, cfg, tmp / args.preset)
        ref = [onnx.load(str(p)) for p in (res.voxel_encoder, res.backbone)]
        name = args.preset + (" (random weights)" if args.random_weights else "")
        yield f"{name}: plain", args.preset, ref, [convert_to_fp16(m) for m in ref]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fix", action="append", default=[], help="a written fix directory (repeatable)")
    ap.add_argument("--fix-preset", default="demo", help="the preset the fixes were written for (default demo)")
    ap.add_argument("--preset", default=None)
    ap.add_argument("--random-weights", action="store_true")
    ap.add_argument("--n", type=int, default=2, help="held-out frames (default 2)")
    args = ap.parse_args()

    import numpy as np

    from cp_debug.compare.pooled import rel_rmse
    from cp_debug.data.frames import HeldOutSet
    from cp_debug.recipes.centerpoint.fix.pair_runs import ort_pair_heads
    from cp_debug.models.centerpoint.presets import get_preset

    def run(cfg, pair, frames, device, mode="emulated"):
        os.environ["CPDEBUG_ORT_CPU_HALF"] = mode
        return ort_pair_heads(cfg, pair[0], pair[1], frames, device=device)[0]

    print("| candidate | output | CUDA | CPU emulated | CPU native | emulated vs CUDA |")
    print("|---|---|---|---|---|---|")
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, preset, ref_pair, cand in _pairs(args, Path(tmp)):
            cfg = get_preset(preset)
            frames = HeldOutSet.load(cfg, args.n)
            ref = run(cfg, ref_pair, frames, "cpu")
            got = {"cuda": run(cfg, cand, frames, "cuda"), "emulated": run(cfg, cand, frames, "cpu"),
                   "native": run(cfg, cand, frames, "cpu", "native")}
            worst = {}
            for out in ref[0]:
                e = {k: rel_rmse([r[out] for r in ref], [g[out] for g in v]) for k, v in got.items()}
                cross = rel_rmse([g[out] for g in got["cuda"]], [g[out] for g in got["emulated"]])
                print(f"| {name} | {out} | {e['cuda']:.3g} | {e['emulated']:.3g} | {e['native']:.3g} | {cross:.3g} |",
                      flush=True)
                for k, v in e.items():
                    worst[k] = v if not np.isfinite(v) else max(worst.get(k, 0.0), v)
            summary.append((name, worst))
    print("\n| candidate | worst: CUDA | emulated | native | emulated / CUDA | native / CUDA |")
    print("|---|---|---|---|---|---|")
    for name, w in summary:
        print(f"| {name} | {w['cuda']:.3g} | {w['emulated']:.3g} | {w['native']:.3g} | "
              f"{_ratio(w['emulated'], w['cuda'])} | {_ratio(w['native'], w['cuda'])} |")


def _ratio(a: float, cuda: float) -> str:
    import numpy as np

    if np.isfinite(a) and np.isfinite(cuda) and cuda:
        return f"{a / cuda:.2f}"
    return "both non-finite" if not np.isfinite(a) and not np.isfinite(cuda) else "—"


if __name__ == "__main__":
    main()
