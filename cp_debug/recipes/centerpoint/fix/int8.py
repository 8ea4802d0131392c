"""The INT8 fix of a CenterPoint PTQ model: the smallest set of layers to leave out of INT8 over a frame set.

The model is a calibrated fake-quant CenterPoint (`ptq.quantize.quantize_centerpoint`, or a PTQ dir / checkpoint
through `recipes.centerpoint.int8_source`). Candidates are its quantized layers ranked by `ptq.sensitivity`
(one layer in INT8 at a time, worst head output's rel. RMSE; the modules a bisect report blamed first of all);
each experiment runs the backbone/neck/head stage in torch with every other layer quantized, on the frames'
FP32 stage inputs, against the BN-fused FP32 model. The artifact is the Q/DQ pair exported with the found
layers' quantizers off (no Q/DQ around them), verified afterwards in ONNX Runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from cp_debug.data.frames import FrameSet
from cp_debug.fix.search import FixSearch, search_fix
from cp_debug.recipes.centerpoint.fix.judge import HeadJudge
from cp_debug.fix.targets import FixTarget


@dataclass(frozen=True)
class Int8Fix:
    search: FixSearch
    layers: tuple[str, ...]  # every quantized layer
    sensitivity: object  # ptq.sensitivity.SensitivityResult of the ranking


def find_int8_fix(cfg, qmodel, fp32_model, frames: FrameSet, target: FixTarget, *, worst: int = 2,
                  frame_order: Sequence[int] | None = None, first: Sequence[str] = (),
                  candidates: Sequence[str] | None = None, progress=None) -> Int8Fix:
    """Search the layers of `qmodel` to leave in FP32 for `target` to hold on `frames` (vs `fp32_model`)."""
    from cp_debug.fix.figures import progress_bar, progress_step, step_printer
    from cp_debug.errors import BadInputError
    from cp_debug.recipes.centerpoint.ptq.scenes import head_outputs, stage_inputs
    from cp_debug.recipes.centerpoint.ptq.sensitivity import Evaluator, layer_sensitivity
    from cp_debug.quant.quantizers import only_quantized, quantized_layers

    with progress_step(progress, f"FP32 stage inputs and reference on {len(frames)} frame(s)"):
        spatial = [stage_inputs(fp32_model, cfg, f.load(cfg).points)[1] for f in frames.frames]
        reference = [head_outputs(fp32_model, s) for s in spatial]
    layers = tuple(quantized_layers(qmodel))
    sens = None
    if candidates is None:
        with progress_step(progress, f"INT8 sensitivity of {len(layers)} layer(s), one at a time"), \
                progress_bar(progress, "one layer at a time", len(layers)) as advance:
            sens = layer_sensitivity(Evaluator(qmodel, fp32_model, spatial), layers,
                                     on_layer=lambda i, n, name: advance())
        candidates = [r.layer for r in sens.rows]
        blamed = [c for c in candidates if any(c == b or c.startswith(b + ".") for b in first)]
        candidates = blamed + [c for c in candidates if c not in set(blamed)]
    unknown = [c for c in candidates if c not in layers]
    if unknown:
        raise BadInputError(f"not quantized layers: {', '.join(unknown[:3])} (quantized: {', '.join(layers[:3])}, ...)")

    def heads(keep, indices):
        kept = set(keep)
        with only_quantized(qmodel, [n for n in layers if n not in kept]):
            return [head_outputs(qmodel, spatial[i]) for i in indices]

    judge = HeadJudge(cfg, frames, reference, target, heads, "int8")
    with progress_step(progress, f"exclusion search over {len(candidates)} layer(s) ({target.describe()})"):
        result = search_fix(list(candidates), judge, target, len(frames), worst=worst,
                            frame_order=frame_order, on_step=step_printer(progress))
    return Int8Fix(result, layers, sens)


def export_pairs(cfg, qmodel, fp32_model, quantized: Sequence[str], out_dir, sample_points=None) -> dict:
    """Export into `out_dir`/{fp32,plain,fixed}: the FP32 pair, the all-INT8 Q/DQ pair, and the Q/DQ pair with
    only `quantized` layers quantized; returns {lane: {file: ModelProto}}."""
    from pathlib import Path

    import onnx

    from cp_debug.recipes.centerpoint.ptq.qdq_files import export_qdq
    from cp_debug.quant.quantizers import only_quantized, quantized_layers
    from cp_debug.recipes.centerpoint.export import BACKBONE_FILE, VOXEL_ENCODER_FILE, export_onnx

    out = Path(out_dir)
    export_onnx(fp32_model, cfg, out / "fp32", sample_points=sample_points)
    with only_quantized(qmodel, quantized_layers(qmodel)):
        export_qdq(qmodel, cfg, out / "plain", sample_points=sample_points)
    with only_quantized(qmodel, quantized):
        export_qdq(qmodel, cfg, out / "fixed", sample_points=sample_points)
    return {lane: {f: onnx.load(str(out / lane / f)) for f in (VOXEL_ENCODER_FILE, BACKBONE_FILE)}
            for lane in ("fp32", "plain", "fixed")}
