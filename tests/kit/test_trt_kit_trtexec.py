"""`trt-fp16@KIT` reading what `run_trtexec.sh` leaves on the target (issue 31): trtexec's numpy debug-tensor dumps
with its tensor_summary.json (`--saveAllDebugTensors=numpy,summary`; an older kit's numpy alone is read too), its
`--exportLayerInfo` and `--exportOutput` files, and the `ran.sha256` the script writes last.

TensorRT cannot run here (no TensorRT, no GPU). The values a target would hold are computed by ONNX Runtime on the
kit's own FP16 files with every tensor exposed — the stand-in for TensorRT, and only for the values. They are written
as trtexec writes them (`tests/backends/trtexec_writer.py` follows trtexec's source byte for byte: file names mangled
by `genFilenameSafeString`, numbered per callback, .npy headers as `writeNumpyFile` pads them), into the folders the
script runs trtexec in, with an engine's layer information as the inspector writes it: the Conv outputs of
`pts_backbone.blocks.0` fused into their ReLU (no layer writes them: not observable), one engine layer whose dump is
missing (a truncated copy), and the Conv that the deployed pair keeps in FP32 run in FP16 (what TensorRT 10 does
with a weakly typed build). The ran.sha256 is written by `sha256sum`, as the script writes it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest

from cp_debug.backends.kit import kit_files as kf
from cp_debug.recipes import catalog
from cp_debug.errors import BadInputError
from cp_debug.backends.spec import BackendSpec
from tests.backends.trtexec_writer import write_debug_dumps, write_export_output, write_layer_info
from tests.kit.kit_helpers import bisect_cli, copy_kit, planted_kit, refused

CP = catalog.recipe()  # the default recipe, CenterPoint (the command line resolves it)

KEPT = "/pts_bbox_head/shared_conv/conv/Conv"  # the deployed pair keeps it in FP32; "TensorRT" runs it in FP16
FUSED_BLOCK = "/pts_backbone/blocks.0/"  # its Conv outputs fused into the ReLU that follows
MISSING = "/pts_backbone/blocks.1/blocks.1.5/Relu_output_0"  # an engine layer writes it; its dump is not copied back
_HALF, _FLOAT = 10, 1


def _target_run(kit: Path, m: kf.Manifest, stage: kf.KitStage, frame: str) -> None:
    """What `run_trtexec.sh` leaves in results/fp16/trtexec/<frame>/<stage>/ for one frame, values from ONNX Runtime."""
    from cp_debug.graph.model import expose_all
    from cp_debug.graph.plan import tensor_types
    from cp_debug.graph.session import run_ort

    model = onnx.load(str(kit / kf.onnx_path("fp16", stage.name, m.held_precision)))
    feed = {t.name: np.fromfile(kit / kf.input_raw(frame, stage.name, t.name), dtype=t.dtype).reshape(t.shapes[frame])
            for t in stage.inputs}
    values = run_ort(expose_all(model), feed)
    types = {n: (t.tensor_type.elem_type if t is not None else None) for n, t in tensor_types(model).items()}
    consumers = {i: n for n in model.graph.node for i in n.input}
    dumps, layers = [], []
    fold: dict[str, onnx.NodeProto] = {}  # a ReLU's input tensor -> the fused Conv
    for node in model.graph.node:
        out = node.output[0]
        if types.get(out) not in (_HALF, _FLOAT):
            continue  # shape arithmetic: no engine layer, no debug tensor
        if node.op_type == "Conv" and node.name.startswith(FUSED_BLOCK) and consumers[out].op_type == "Relu":
            fold[out] = node
            continue
        ran_half = types[out] == _HALF or node.name == KEPT
        fmt = "Row major linear FP16 format" if ran_half else "Row major linear FP32"
        conv = fold.get(node.input[0])
        names = [conv.name, node.name] if conv is not None else [node.name]
        src = conv.input[0] if conv is not None else node.input[0]
        layers.append({"name": " + ".join(names), "type": "CaskConvolution" if conv is not None else node.op_type,
                       "inputs": [(src, {**feed, **values}.get(src, np.zeros(())).shape, fmt)],
                       "outputs": [(out, values[out].shape, fmt)], "onnx": names})
        if out != MISSING:
            dumps.append((out, values[out], "HALF" if ran_half else "FLOAT"))
    run = kit / kf.trtexec_results("fp16", frame, stage.name)
    write_debug_dumps(run, dumps, summary=True,
                      cmdline=f"trtexec --loadEngine={stage.name}.engine --saveAllDebugTensors=numpy,summary")
    write_layer_info(run / kf.TRTEXEC_LAYERS, layers, [i.name for i in model.graph.input]
                     + [o.name for o in model.graph.output])
    write_export_output(run / kf.TRTEXEC_OUTPUTS, [(t.name, values[t.name]) for t in stage.outputs])
    (run / kf.TRTEXEC_LOG).write_text("&&&& PASSED TensorRT.trtexec [TensorRT v101300]\n")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(kit, checkpoint): the planted pair deployed in FP16 with KEPT in FP32, its kit, and trtexec's results."""
    from cp_debug.precision.fp16 import convert_to_fp16

    def deploy_fp16(stage: str, model: onnx.ModelProto) -> onnx.ModelProto:
        return convert_to_fp16(model, keep_fp32_nodes=[KEPT] if stage == "pts_backbone_neck_head" else [])

    kit, _, ckpt, _ = planted_kit(tmp_path_factory.mktemp("trt_kit_trtexec"), deploy_fp16)
    m = kf.open_kit(kit).manifest
    for st in m.stages:
        for fr in m.frames:
            _target_run(kit, m, st, fr.id)
    ran = subprocess.run(["sha256sum", *m.ran_files("fp16")], cwd=kit, capture_output=True, text=True, check=True)
    (kit / kf.ran_file("fp16")).write_text(ran.stdout)  # what run_trtexec.sh's last step writes
    return kit, ckpt


def test_bisect_reads_trtexec_dumps_and_names_the_planted_layer(written):
    from cp_debug.bisect.engine import BisectEngine, BisectOptions
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    kit, ckpt = written
    assert kf.open_kit(kit).manifest.held_precision == "fp16"  # the pair as deployed is what the target ran
    subject = centerpoint_subject("tiny", checkpoint=ckpt, points=kit / "frames" / "frame_000.npy")
    target = f"trt-fp16@{kit}"
    report = BisectEngine(subject, ("torch", BackendSpec.parse("torch")), [(target, BackendSpec.parse(target))],
                          BisectOptions(noise_floor=False, level="layer")).run()
    t = report.candidate(target)
    assert (t.first_divergent, t.root_cause.probe) == ("pts_neck.deblocks.0.1", "pts_neck.deblocks.0.1")
    assert "FP16 range" in t.root_cause.hint
    res = {r.probe: r for r in t.results}
    fused = [r for r in t.results if r.status == "missing" and r.note == "fused: not observable in this engine"]
    # the exporter folds each BatchNorm into its Conv, so the BN modules' probes are the fused Conv outputs
    assert {r.probe for r in fused} == {"pts_backbone.blocks.0.1", "pts_backbone.blocks.0.4",
                                        "pts_backbone.blocks.0.7", "pts_backbone.blocks.0.10"}
    assert res["pts_backbone.blocks.1.5"].status == "missing"
    assert "missing from the dump folder" in res["pts_backbone.blocks.1.5"].note
    assert res["pts_backbone.blocks.0.2"].status == "ok"  # the ReLU the Conv was fused into is observed
    assert res["pts_backbone.blocks.1.4"].status == "ok" and res["pts_neck.deblocks.0.2"].status == "inf"
    notes = t.precision["notes"]
    assert any(f"TensorRT ran {KEPT} in FP16 although the ONNX keeps it in FP32" in n for n in notes)
    assert any("TensorRT ran the engine's" in n and "FP16" in n and "FP32" in n for n in notes)
    assert any("4 tensor(s) fused: not observable in this engine" in n for n in notes)
    assert any("TensorRT on the target (trtexec)" in n for n in notes)


def test_the_summary_names_the_dumps_and_an_older_kits_numpy_alone_is_still_read(written, tmp_path):
    from cp_debug.backends.kit.kit_results import target_results
    from cp_debug.backends.trt.trt_dumps_numpy import SUMMARY_FILE

    kit = written[0]
    old = copy_kit(kit, tmp_path / "numpy_only")  # what run_trtexec.sh wrote before it asked for the summary
    for summary in old.rglob(SUMMARY_FILE):
        summary.unlink()

    def first_frame(folder):
        opened = kf.open_kit(folder)
        return target_results(opened, "fp16", opened.manifest.stage("pts_backbone_neck_head")).frames["frame_000"]

    new, older = first_frame(kit), first_frame(old)
    assert new.dumps.resolved_by == SUMMARY_FILE and older.dumps.resolved_by == "file names"
    assert set(older) == set(new) and MISSING not in new
    for name in new:
        np.testing.assert_array_equal(older[name], new[name])


def test_a_truncated_dump_stops_bisect_in_one_line_writing_nothing(written, tmp_path):
    kit, ckpt = written
    bad = copy_kit(kit, tmp_path / "truncated")
    run = bad / kf.trtexec_results("fp16", "frame_000", "pts_backbone_neck_head")
    npy = sorted(run.glob("*.npy"))[3]
    npy.write_bytes(npy.read_bytes()[:-100])
    out = tmp_path / "report.json"
    code, lines = bisect_cli(bad, ckpt, out)
    assert code == 2, lines
    assert f"{npy.name} is cut short or damaged" in lines[-1] and not out.exists()


def test_mismatched_or_incomplete_trtexec_results_are_refused_in_one_line(written, tmp_path):
    kit = written[0]
    bad = copy_kit(kit, tmp_path / "other_inputs")  # the target ran other inputs than the kit's
    ran = bad / kf.ran_file("fp16")
    raw = kf.input_raw("frame_000", "pts_voxel_encoder", "input_features")
    ran.write_text(ran.read_text().replace(kf.sha256_file(bad / raw), "0" * 64))
    refused(bad, "computed from other inputs")
    bad = copy_kit(kit, tmp_path / "no_frame")  # a frame's folder not copied back
    shutil.rmtree(bad / kf.trtexec_results("fp16", "frame_000", "pts_voxel_encoder"))
    refused(bad, "did not run pts_voxel_encoder on frame_000")
    bad = copy_kit(kit, tmp_path / "layers")  # the layer information cut short
    layers = bad / kf.trtexec_results("fp16", "frame_000", "pts_voxel_encoder") / kf.TRTEXEC_LAYERS
    layers.write_text(layers.read_text()[:200])
    refused(bad, "is not a complete trtexec layer-information file")
    bad = copy_kit(kit, tmp_path / "outputs")  # --exportOutput of another engine: another output shape
    out = bad / kf.trtexec_results("fp16", "frame_000", "pts_voxel_encoder") / kf.TRTEXEC_OUTPUTS
    write_export_output(out, [("pillar_features", np.zeros((3, 4), np.float32))])
    for npy in out.parent.glob("*_pillar_features.npy"):
        npy.unlink()  # served from outputs.json where no dump holds it
    refused(bad, "output 'pillar_features' of frame_000 is (3, 4)")


def test_sweep_runs_over_the_kits_frames(written, tmp_path):
    from cp_debug.sweep.records import SweepSettings
    from cp_debug.sweep.session import SweepOptions, run_sweep

    kit, ckpt = written
    settings = SweepSettings(("torch", f"trt-fp16@{kit}"), preset="tiny", level="layer", checkpoint=str(ckpt),
                             recipe=CP)
    out = run_sweep(SweepOptions(settings, tmp_path / "sweep", bisect_top=0, bootstrap=0))  # no --scenes: the kit's
    (r,) = out.results
    assert (r.token, r.status) == (kf.open_kit(kit).manifest.frames[0].token, "diverged"), r.reason
    probes = {p.probe: p.status for p in r.candidates[0].probes}
    assert probes["pts_neck.deblocks.0.1"] == "inf" and probes["pts_neck.deblocks.1.1"] == "ok"  # Inf, no NaN
    assert probes["pts_backbone.blocks.0.1"] == "missing" and probes["pts_backbone.blocks.0.2"] == "ok"  # fused
    with pytest.raises(BadInputError, match="drop --scenes"):
        run_sweep(SweepOptions(settings, tmp_path / "other", scenes=kit / "frames"))
