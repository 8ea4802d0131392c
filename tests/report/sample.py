"""A realistic BisectReport built from real TensorDiffs: 8 probes, an FP16 saturation planted at probe 3."""

from __future__ import annotations

import numpy as np

from cp_debug.bisect.subjects.model_facts import RecipeFacts
from cp_debug.bisect.result import BisectReport, CandidateResult, Probe, ProbeResult, RootCause
from cp_debug.compare.diff import TensorDiff, Tolerance
from cp_debug.compare.plot_data import error_heatmap, error_histogram

FP16 = "ort-cpu-fp16"
FP32 = "ort-cpu-fp32"
TRT = "trt-fp16"
PLANTED = "pts_backbone.blocks.1.0.conv"
HINT = "values beyond the FP16 range: |x| up to 1.6e5 > 65504 (saturated)"
TOL16 = Tolerance(atol=2e-2, rtol=2e-2, max_share=1e-3)
TOL32 = Tolerance(atol=1e-4, rtol=1e-3)

PROBES = [
    Probe(0, "pts_voxel_encoder", "/pts_voxel_encoder/Relu_output_0", "Relu", "pts", None, 0),
    Probe(1, "pts_middle_encoder", "/pts_middle_encoder/ScatterND_output_0", "ScatterND", "pts", None, 0),
    Probe(2, "pts_backbone.blocks.0", "/pts_backbone/blocks.0/Relu_output_0", "Relu", "pts", None, 0),
    Probe(3, PLANTED, "/pts_backbone/blocks.1/0/conv/Conv_output_0", "Conv", "pts", "pts_backbone.blocks.1", 1),
    Probe(4, "pts_backbone.blocks.1.0.relu", "/pts_backbone/blocks.1/0/Relu_output_0", "Relu", "pts",
          "pts_backbone.blocks.1", 1),
    Probe(5, "pts_backbone.blocks.1", "/pts_backbone/blocks.1/Relu_output_0", "Relu", "pts", None, 0),
    Probe(6, "pts_neck", "/pts_neck/Concat_output_0", "Concat", "pts", None, 0),
    Probe(7, "pts_bbox_head.heatmap", "heatmap", "Conv", "pts", None, 0),
]


def tensors(seed: int = 0):
    """Reference activations (1, 4, 32, 32) per probe and an FP16-like candidate with a planted overflow."""
    rng = np.random.default_rng(seed)
    refs, fp16, fp32 = [], [], []
    err = np.zeros((1, 4, 32, 32))
    for i, _ in enumerate(PROBES):
        ref = rng.normal(size=(1, 4, 32, 32)) * (1 + i)
        if i == 3:  # a hot region overflows: the candidate saturates there
            ref[:, :, 8:13, 20:27] *= 4e4
            err = np.zeros_like(ref)
            err[:, :, 8:13, 20:27] = np.sign(ref[:, :, 8:13, 20:27]) * 3e3
        if i >= 3:
            cand = np.clip(ref + err, -65504, 65504).astype(np.float16).astype(np.float64)
        else:
            cand = ref + rng.normal(size=ref.shape) * 1e-4
        refs.append(ref)
        fp16.append(cand)
        fp32.append(ref + rng.normal(size=ref.shape) * 1e-7)
    return refs, fp16, fp32


def build_report() -> BisectReport:
    refs, fp16, fp32 = tensors()
    res16, res32 = [], []
    prev = None
    for i, p in enumerate(PROBES):
        d = TensorDiff.from_arrays(p.name, refs[i], fp16[i], TOL16)
        local = TensorDiff.from_arrays(p.name, refs[i], fp16[i] if i == 3 else refs[i] + 1e-5, TOL16)
        amp = None if prev is None or prev.rel_rmse == 0 else d.rel_rmse / prev.rel_rmse
        res16.append(ProbeResult(p.name, d.status, d, local if i in (2, 3, 4) else None, amp))
        prev = d
        d32 = TensorDiff.from_arrays(p.name, refs[i], fp32[i], TOL32)
        res32.append(ProbeResult(p.name, d32.status, d32))
    res16.append(ProbeResult("pts_bbox_head.reg", "missing", note="not exported by this recipe"))
    c16 = CandidateResult(FP16, "ort-cpu-fp16", res16, first_divergent=PLANTED, root_cause=RootCause(PLANTED, HINT),
                          path=["pts_backbone.blocks.1", PLANTED],
                          precision={"requested": "fp16", "effective": "fp16",
                                     "notes": ["all 12 Conv nodes ran in float16"]},
                          outputs_within_tolerance=False, wall_s=1.234)
    c32 = CandidateResult(FP32, "ort-cpu-fp32", res32, outputs_within_tolerance=True, wall_s=0.5,
                          precision={"requested": "fp32", "effective": "fp32", "notes": []})
    ctrt = CandidateResult(TRT, "trt-fp16", [], error="TensorRT is not installed: pip install 'cp-debug[trt]'")
    plots = {FP16: {"histogram": error_histogram(refs[3], fp16[3], probe=PLANTED),
                    "heatmap": error_heatmap(refs[3], fp16[3], probe=PLANTED)}}
    settings = {"deterministic": True, "tolerance": {FP16: vars(TOL16), FP32: vars(TOL32)},
                "ort": {"graph_optimization_level": "ORT_DISABLE_ALL"}}
    env = {"python": "3.11.7", "torch": "2.13", "onnxruntime": "1.31", "device": "cpu"}
    facts = RecipeFacts("centerpoint", "demo", "random weights (seed 0)", "synthetic scene (seed 0)", None, 0,
                        num_points=1500, num_voxels=900, grid=(320, 320), checkpoint=None, random_weights=True)
    return BisectReport("torch", [c16, c32, ctrt], PROBES, settings, env, facts,
                        ["noise floor: the reference repeats bit-exactly"], plots)
