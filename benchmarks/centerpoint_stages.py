"""Run the staged CenterPoint pipeline on several torch backends and print, per stage, the max abs difference
from the CPU FP32 result and the median time. Meant for the GPU machine:

    python benchmarks/centerpoint_stages.py --preset awml-base \
        --backends torch,torch-cuda,torch-cuda-tf32,torch-cuda-fp16
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--backends", default="torch,torch-cuda,torch-cuda-tf32,torch-cuda-fp16")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from cp_debug.backends.factory import check_available, make_runner
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.errors import BackendUnavailableError
    from cp_debug.models.centerpoint.presets import get_preset
    from cp_debug.models.centerpoint.model import (BACKBONE_INPUTS, HEAD_OUTPUTS, VOXEL_ENCODER_INPUTS,
                                                   VOXEL_ENCODER_OUTPUTS, BackboneNeckHeadStage,
                                                   VoxelEncoderStage, build_model)
    from cp_debug.lidar.synthetic import synthetic_scene
    from cp_debug.lidar.compare_detections import compare_detections
    from cp_debug.recipes.centerpoint.pipeline import run_pipeline

    cfg = get_preset(args.preset)
    model = build_model(cfg, seed=args.seed)
    points = synthetic_scene(args.seed, cfg).points
    print(f"preset {args.preset}: grid {cfg.grid_size}, {len(points)} points")
    results = {}
    for label in args.backends.split(","):
        spec = BackendSpec.parse(label)
        try:
            check_available(spec)
        except BackendUnavailableError as err:
            print(f"{label}: not run: {err}")
            continue
        enc = make_runner(spec, torch_module=VoxelEncoderStage(model), input_names=VOXEL_ENCODER_INPUTS,
                          output_names=VOXEL_ENCODER_OUTPUTS)
        bb = make_runner(spec, torch_module=BackboneNeckHeadStage(model), input_names=BACKBONE_INPUTS,
                         output_names=HEAD_OUTPUTS)
        device = "cuda" if spec.device == "cuda" else "cpu"
        with enc, bb:
            run_pipeline(cfg, points, enc, bb, device=device)  # warm-up
            runs = [run_pipeline(cfg, points, enc, bb, device=device) for _ in range(args.repeat)]
        timing = {k: statistics.median(r.timings[k] for r in runs) for k in runs[0].timings}
        results[label] = (runs[-1], timing)
    ref_label = args.backends.split(",")[0]
    if ref_label not in results:
        return
    ref = results[ref_label][0].boundaries()
    ref_det = results[ref_label][0].detections
    stages = ["pillar_features", "spatial_features", *HEAD_OUTPUTS]
    print("\nmax abs difference from", ref_label)
    print(f"{'backend':18s}" + "".join(f"{s:>17s}" for s in stages) + f"{'boxes':>8s}{'matched':>9s}")
    for label, (res, _) in results.items():
        got = res.boundaries()
        cells = "".join(f"{float(np.abs(got[s].astype(np.float64) - ref[s]).max()):17.3e}" for s in stages)
        dd = compare_detections(ref_det, res.detections)
        print(f"{label:18s}{cells}{len(res.detections):8d}{dd.num_matched:9d}")
    print(f"\nmedian seconds per step over {args.repeat} runs (after one warm-up)")
    steps = list(next(iter(results.values()))[1])
    print(f"{'backend':18s}" + "".join(f"{s:>22s}" for s in steps) + f"{'total':>9s}")
    for label, (_, timing) in results.items():
        print(f"{label:18s}" + "".join(f"{timing[s]:22.4f}" for s in steps) + f"{sum(timing.values()):9.3f}")


if __name__ == "__main__":
    main()
