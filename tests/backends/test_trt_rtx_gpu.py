"""TensorRT for RTX's builder on the real pairs, on the GPU machine (marked `gpu`: the awml-base pair and the PTQ and
`cpdebug fix` runs it takes are too heavy for the CPU suite): the demo and awml-base pairs at FP32, FP16 (cp_debug's
transform) and INT8 (cp_debug's PTQ Q/DQ export), and the kept-FP32 pair a `cpdebug fix` folder holds, each stage
parsed and built with every tensor a probe. Its figures (layers, probes found in the network, seconds, bytes) are
printed and, with CPDEBUG_TRT_RTX_FACTS=FILE, written as JSON.

Nothing here runs an engine: TensorRT-RTX's runtime refuses the H100 (compute capability 9.0), which the end-to-end
`cpdebug bisect --backends torch-cuda,trt-rtx-fp16` of benchmarks/gpu_trt_rtx.sh shows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from cp_debug.backends.spec import BackendSpec
from cp_debug.backends.trt.trt_runner import TrtRunner
from cp_debug.errors import BackendUnavailableError

pytestmark = pytest.mark.gpu
FACTS: list[dict] = []


@pytest.fixture(scope="module", autouse=True)
def rtx():
    from cp_debug.backends.trt.trt_library import load_library

    try:
        load_library("trt-rtx")
    except BackendUnavailableError as err:
        pytest.skip(f"TensorRT-RTX not installed here, not run: {err}")
    yield
    out = os.environ.get("CPDEBUG_TRT_RTX_FACTS")
    if out and FACTS:
        from cp_debug.files import write_json

        write_json(out, FACTS)


def _pair(preset: str, folder) -> dict:
    from cp_debug.lidar.record import ModelRecord
    from cp_debug.recipes.catalog import recipe
    from cp_debug.recipes.centerpoint.export import export_onnx

    loaded = recipe().load_model(ModelRecord(preset=preset, random_weights=preset != "demo"))
    result = export_onnx(loaded.model, loaded.cfg, folder)
    return {"cfg": loaded.cfg, "model": loaded.model, "pts_voxel_encoder": result.voxel_encoder,
            "pts_backbone_neck_head": result.backbone}


def _qdq_pair(pair: dict, folder) -> dict:
    from cp_debug.data.frames import calibration, points_of
    from cp_debug.recipes.centerpoint.ptq.qdq_files import export_qdq
    from cp_debug.recipes.centerpoint.ptq.quantize import quantize_centerpoint

    cfg = pair["cfg"]
    q = quantize_centerpoint(pair["model"].cpu(), cfg, points_of(calibration(cfg, 2), cfg), 2, method="max")
    found = export_qdq(q.model, cfg, folder)
    return {"pts_voxel_encoder": found.voxel_encoder.path, "pts_backbone_neck_head": found.backbone.path}


def _build(label: str, paths: dict, precision, cfg, tmp_path, keep=None) -> None:
    """Build both stages of `paths` (`precision`: one for both, or {stage: precision}) with every tensor a probe."""
    for stage in ("pts_voxel_encoder", "pts_backbone_neck_head"):
        path = paths[stage]
        at = precision[stage] if isinstance(precision, dict) else precision
        m = onnx.load(str(path))
        inp = m.graph.input[0]
        dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        rng = np.random.default_rng(0)
        if stage == "pts_voxel_encoder":
            shape = (8000, dims[1] or 32, dims[2])
        else:
            nx, ny = cfg.grid_size
            shape = (1, dims[1], ny, nx)
        outputs = {o.name for o in m.graph.output}
        probes = [t for n in m.graph.node for t in n.output if t and t not in outputs and n.op_type != "Constant"]
        r = TrtRunner(path, BackendSpec.parse(f"trt-rtx-{at}"), extra_outputs=probes, cache=False,
                      keep_fp32_nodes=(keep or {}).get(stage, ()))
        facts = r.build({inp.name: rng.standard_normal(shape, dtype=np.float32)})
        row = {"pair": label, "stage": stage, "precision": at, "probes": len(probes), **facts.to_json(),
               "transform": r.settings()["precision_transform"]["kind"]}
        FACTS.append(row)
        print(f"{label:22s} {stage:24s} {at:5s} {row['layers']:4d} layers  {row['probes_in_network']:4d}/"
              f"{len(probes):4d} probes in the network  {row['seconds']:6.2f} s  {row['engine_bytes'] / 1e6:7.1f} MB")
        assert row["layers"] > 5 and row["probes_in_network"] > 0


@pytest.mark.parametrize("preset", ["demo", "awml-base"])
def test_the_pairs_build_at_fp32_fp16_and_int8(preset, tmp_path):
    pair = _pair(preset, tmp_path / "fp32")
    for precision in ("fp32", "fp16"):
        _build(f"{preset} export", pair, precision, pair["cfg"], tmp_path)
    # as AWML deploys its PTQ: the voxel encoder stays FP32 (no Q/DQ in it), the backbone's Q/DQ built as they are
    _build(f"{preset} PTQ Q/DQ", _qdq_pair(pair, tmp_path / "qdq"),
           {"pts_voxel_encoder": "fp32", "pts_backbone_neck_head": "int8"}, pair["cfg"], tmp_path)
    assert FACTS[-1]["transform"] == "none"  # the Q/DQ file carries INT8: no quantization of ours on top


@pytest.mark.needs("nuscenes-devkit")  # `cpdebug fix` judges detections with its metrics
def test_a_fix_folder_s_kept_fp32_pair_builds(tmp_path):
    """A `cpdebug fix` folder of the demo (FP16 against torch, a set kept in FP32): the pair it writes builds as it
    is. CPDEBUG_FIX_DIR names one made beforehand (`cpdebug fix --backends torch,ort-cpu-fp16 --max-rel-rmse 0.008 --out
    DIR`, ~10 min on the 2-core machine); without it the fix runs here."""
    from cp_debug.models.centerpoint.presets import get_preset
    from tests.cli_run import cpdebug

    given = os.environ.get("CPDEBUG_FIX_DIR")
    out = Path(given) if given else tmp_path / "fix"
    if not given:
        proc = cpdebug("fix", "--backends", "torch,ort-cpu-fp16", "--max-rel-rmse", "0.008", "--out", str(out), "-q")
        assert proc.returncode == 0, proc.stderr
    kept = json.loads((out / "fix.json").read_text())["search"]["keep"]
    assert kept, "a fix whose set is empty holds no node kept in FP32"
    paths = {s: out / f"{s}.onnx" for s in ("pts_voxel_encoder", "pts_backbone_neck_head")}
    _build(f"demo fix ({len(kept)} kept)", paths, "fp16", get_preset("demo"), tmp_path)
    assert FACTS[-1]["transform"] == "none"  # the file carries its precision: built as it is, strongly typed
