"""The PTQ dir `cpdebug quantize` writes, whole or not at all: the PTQ checkpoint, the two Q/DQ ONNX files and
`quantization.json` (what was quantized, per-layer SQNR, FP32 vs INT8 error and, with mAP scenes, mAP per lane)."""

from __future__ import annotations

from pathlib import Path

from cp_debug.recipes.centerpoint.ptq.quantize import CalibratedModel, PtqSettings


def write_ptq_dir(cal: CalibratedModel, settings: PtqSettings, eval_scenes: int, map_scenes: int,
                  out: str | Path) -> dict:
    """Write the PTQ dir `out` of a calibrated model; returns its summary (quantization.json plus "out")."""
    from cp_debug.files import write_json
    from cp_debug.recipes.centerpoint.ptq.int8_error import compare_int8
    from cp_debug.recipes.centerpoint.ptq.qdq_files import export_qdq
    from cp_debug.data.frames import held_out, points_of
    from cp_debug.recipes.centerpoint.ptq.scenes import stage_inputs
    from cp_debug.quant.ptq_checkpoint import CHECKPOINT_FILE, REPORT_FILE, save_ptq_checkpoint, write_dir_atomically
    from cp_debug.quant.sqnr import quantization_error

    loaded, run = cal.loaded, cal.run
    cfg = loaded.cfg
    spatial = [stage_inputs(run.fused_fp32, cfg, p)[1] for p in points_of(held_out(eval_scenes), cfg)]

    def sqnr_loop(model) -> int:
        from cp_debug.models.centerpoint.model import BackboneNeckHeadStage

        for s in spatial:
            BackboneNeckHeadStage(model)(s)
        return len(spatial)

    quant = {
        "method": run.method, "percentile": settings.percentile if run.method == "percentile" else None,
        "calibration": cal.calibration, "calibration_scenes": run.scenes, "convtranspose": settings.convtranspose,
        "layers": [{"name": p.name, "kind": p.kind, "weight_axis": p.weight_axis} for p in run.plan.layers],
        "skipped": [{"name": n, "reason": r} for n, r in run.plan.skipped],
        "bn_pairs": run.bn_pairs, "seconds": round(run.seconds, 3),
    }

    def write(tmp: Path) -> dict:
        save_ptq_checkpoint(run.model, tmp / CHECKPOINT_FILE, meta={"quantization": quant, "weights": loaded.weights})
        qdq = export_qdq(run.model, cfg, tmp)
        table = quantization_error(run.model, sqnr_loop)
        cmp = compare_int8(run.fused_fp32, run.model, qdq.backbone.path, spatial)
        maps = None
        if map_scenes:
            from cp_debug.recipes.centerpoint.ptq.map_eval import map_scenes as held_out_with_gt, map_table

            scenes = held_out_with_gt(cfg, run.fused_fp32, map_scenes)
            maps = map_table(cfg, run.fused_fp32, run.model, scenes, qdq.backbone.path).to_json()
        summary = {
            "preset": cfg.name, "weights": loaded.weights, **quant,
            "onnx": {name: {"file": s.path.name, "quantize_nodes": s.quantize_nodes,
                            "dequantize_nodes": s.dequantize_nodes, "quantized_convs": len(s.quantized_convs),
                            "float_convs": list(s.float_convs), "per_axis_weights": s.per_axis_weights}
                     for name, s in (("voxel_encoder", qdq.voxel_encoder), ("backbone", qdq.backbone))},
            "sqnr": table.to_json(),
            "int8_error": cmp.to_json(),
            "map": maps,
            "tensorrt": "not run (not available here); the Q/DQ form is TensorRT's explicit quantization",
        }
        write_json(tmp / REPORT_FILE, summary)
        return summary

    summary = write_dir_atomically(out, write)
    summary["out"] = str(out)
    return summary
