"""`cpdebug trt-kit` and `trt-fp16@KIT` (issue 31): a kit written for a deployed pair that really overflows in FP16,
run on "the target" by its own polygraphy script with ONNX Runtime in TensorRT's place (`--onnxrt`: the real
polygraphy CLI writing a real RunResults file), read back by bisect — which must name the planted layer as first
divergent probe, root cause and refinement path, and see the overflow where ONNX Runtime on the same files sees it.
TensorRT itself never runs here.

The tiny preset (the demo's modules on an 80×80 grid) keeps the module well under a minute: a demo kit's polygraphy
results alone are ~600 MB.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from cp_debug.backends.kit import kit_files as kf
from cp_debug.backends.spec import BackendSpec, Capability
from cp_debug.compare.noise import Outcome
from tests.kit.kit_helpers import bisect_cli, copy_kit, planted_kit, refused


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(kit, deployed dir, checkpoint, points file): the planted pair deployed as cp_debug exports it, its kit, and
    the kit's polygraphy script run with ONNX Runtime standing in for TensorRT."""
    kit, deployed, ckpt, points = planted_kit(tmp_path_factory.mktemp("trt_kit"))
    proc = subprocess.run(["bash", str(kit / kf.POLYGRAPHY_SCRIPT), "fp16", "--onnxrt"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return kit, deployed, ckpt, points


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow
def test_the_kit_holds_what_trtexec_and_polygraphy_read(written):
    from polygraphy.json import load_json

    kit, deployed, _, _ = written
    m = kf.open_kit(kit).manifest  # every listed file checked against its sha256
    assert m.held_precision == "fp32" and m.precisions == ("fp16",) and len(m.frames) == 1
    assert (kit / "pts_voxel_encoder.onnx").read_bytes() == (deployed / "pts_voxel_encoder.onnx").read_bytes()
    assert BackendSpec.parse(f"trt-fp16@{kit}").can(Capability.TARGET_RESULTS)
    assert not BackendSpec.parse(f"ort@{kit}").kit  # a kit is also a plain deployed folder
    fid = m.frames[0].id
    for st in m.stages:
        feeds = load_json(str(kit / kf.polygraphy_inputs(st.name)))
        for t in st.inputs:  # trtexec's raw file and polygraphy's JSON hold the same bytes, hashed in the manifest
            raw = np.fromfile(kit / kf.input_raw(fid, st.name, t.name), dtype=t.dtype).reshape(t.shapes[fid])
            assert np.array_equal(raw, feeds[0][t.name]) and kf.array_sha256(raw) == t.sha256[fid]
    enc = m.stage("pts_voxel_encoder").inputs[0]
    assert m.profile["pts_voxel_encoder"]["input_features"]["max"][0] == 12000  # the config's max_voxels
    assert m.profile["pts_voxel_encoder"]["input_features"]["min"] == list(enc.shapes[fid])
    script = (kit / kf.TRTEXEC_SCRIPT).read_text()
    for flag in ("--loadInputs=", "--loadRefOutputs=", "--accuracyThreshold=", "--markUnfusedTensorsAsDebugTensors",
                 "--saveAllDebugTensors=numpy", "--exportLayerInfo=", "--exportOutput=", "--stronglyTyped",
                 "--profilingVerbosity=detailed", "--minShapes=input_features:", "--maxShapes=input_features:12000x"):
        assert flag in script, flag
    for name in (kf.TRTEXEC_SCRIPT, kf.POLYGRAPHY_SCRIPT):
        assert subprocess.run(["bash", "-n", str(kit / name)]).returncode == 0
        bare = subprocess.run(["bash", str(kit / name)], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
        assert bare.returncode == 3 and len(bare.stderr.strip().splitlines()) == 1  # the tool is missing: one line
    assert "fp16/pts_backbone_neck_head.onnx" in (kit / kf.ran_file("fp16")).read_text()


def test_bisect_reads_the_target_results_and_names_the_planted_layer(written):
    from cp_debug.bisect.engine import BisectEngine, BisectOptions
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    kit, deployed, ckpt, _ = written
    subject = centerpoint_subject("tiny", checkpoint=ckpt, points=kit / "frames" / "frame_000.npy")
    target, ort = f"trt-fp16@{kit}", f"ort-cpu-fp16@{deployed}"
    report = BisectEngine(subject, ("torch", BackendSpec.parse("torch")),
                          [(target, BackendSpec.parse(target)), (ort, BackendSpec.parse(ort))],
                          BisectOptions(noise_floor=False)).run()
    t, o = report.candidate(target), report.candidate(ort)
    # the planted layer, named by its module: the overflowing BatchNorm, with its mechanism from the file (issue 115:
    # a user's FP16 file's constants read too): the bias it was folded into is beyond float16's range
    assert (t.first_divergent, t.root_cause.probe) == ("pts_neck.deblocks.0.1", "pts_neck.deblocks.0.1")
    assert t.path == ["pts_neck.deblocks.0", "pts_neck.deblocks.0.1"]
    assert "a constant beyond float16's range at Conv '/pts_neck/deblocks.0/deblocks.0.0/Conv'" in t.root_cause.hint
    # ort-cpu-fp16@DIR on the same files names the same layer, first divergent, root cause and path (issue 31's
    # done-when), both diverged; judged by the noise model (the default): under the fixed element-wise tolerance
    # blocks.2's FP16 rounding, fed ORT's own upstream values, crossed max_share first
    assert (o.first_divergent, o.root_cause.probe, o.path) == (t.first_divergent, t.root_cause.probe, t.path)
    assert t.outcome is o.outcome is Outcome.DIVERGED
    tr, orr = {r.probe: r for r in t.results}, {r.probe: r for r in o.results}
    assert tr["pts_neck.deblocks.0"].status == orr["pts_neck.deblocks.0"].status == "inf"  # the overflow: Inf, no NaN
    assert tr["pts_neck.deblocks.1"].status == orr["pts_neck.deblocks.1"].status == "ok"
    assert any("ONNX Runtime in TensorRT's place" in n for n in t.precision["notes"])
    assert any("reference's input of frame frame_000" in n for n in t.precision["notes"])
    assert any(f"{target}: TensorRT cannot run here" in w and "ort-cpu-fp16" in w for w in report.warnings)
    assert tr[t.root_cause.probe].local is not None  # ONNX Runtime's local error on the kit's segment
    doc = report.to_json()
    assert doc["first_divergent"][target] == t.first_divergent and doc["candidate_specs"][target] == target


def test_a_mismatched_or_damaged_kit_is_refused_in_one_line(written, tmp_path):
    kit = written[0]
    bad = copy_kit(kit, tmp_path / "onnx")
    (bad / "fp16" / "pts_voxel_encoder.onnx").write_bytes(b"\0" * 10)
    refused(bad, "does not match the kit's manifest")
    bad = copy_kit(kit, tmp_path / "missing")
    (bad / kf.input_raw("frame_000", "pts_voxel_encoder", "input_features")).unlink()
    refused(bad, "is missing from the kit")
    bad = copy_kit(kit, tmp_path / "other_onnx")  # results computed from another ONNX file on the target
    ran = bad / kf.ran_file("fp16")
    ran.write_text(ran.read_text().replace(kf.sha256_file(bad / "fp16/pts_voxel_encoder.onnx"), "0" * 64))
    refused(bad, "computed from another ONNX file")
    bad = copy_kit(kit, tmp_path / "no_results")
    shutil.rmtree(bad / "results")
    refused(bad, "holds no results for fp16")


def test_a_truncated_results_file_stops_bisect_in_one_line_writing_nothing(written, tmp_path):
    kit, _, ckpt, _ = written
    bad = copy_kit(kit, tmp_path / "truncated")
    res = bad / kf.polygraphy_results("fp16", "pts_backbone_neck_head")
    res.write_bytes(res.read_bytes()[: res.stat().st_size // 2])
    out = tmp_path / "report.json"
    code, lines = bisect_cli(bad, ckpt, out)
    assert code == 2, lines
    assert "is not a complete polygraphy RunResults" in lines[-1] and not out.exists()


def test_results_written_again_are_read_again_by_a_long_lived_process(written, tmp_path):
    """A server (`cpdebug serve`) or a notebook reads a kit's results once while they stay as they were, and again
    after the target's results are copied back: here a damaged copy, refused where the first read would hide it."""
    from cp_debug.backends.kit.kit_results import target_results
    from cp_debug.errors import BadInputError

    kit = copy_kit(written[0], tmp_path / "again")
    opened = kf.open_kit(kit)
    stage = opened.manifest.stage("pts_backbone_neck_head")
    first = target_results(opened, "fp16", stage)
    assert target_results(opened, "fp16", stage) is first
    res = kit / kf.polygraphy_results("fp16", stage.name)
    res.write_bytes(res.read_bytes()[: res.stat().st_size // 2])
    with pytest.raises(BadInputError, match="is not a complete polygraphy RunResults"):
        target_results(opened, "fp16", stage)


def test_polygraphy_trt_results_hold_the_outputs_and_say_where_per_layer_values_are(written, tmp_path):
    """What `run_polygraphy.sh` (--trt) brings back: the engine's outputs only (polygraphy's TrtRunner turns on no
    unfused debug tensor, 0.49.26 ... 0.53.6). The other tensors are absent for that reason, not as fused away."""
    from polygraphy.comparator import IterationResult, RunResults

    from cp_debug.backends.kit.kit_results import target_results
    from cp_debug.backends.trt.trt_dumps_polygraphy import read_polygraphy_results

    kit = copy_kit(written[0], tmp_path / "trt")
    stage = kf.open_kit(kit).manifest.stage("pts_backbone_neck_head")
    path = kit / kf.polygraphy_results("fp16", stage.name)
    [(_, iterations)] = read_polygraphy_results(path)
    runner = "trt-runner-N0-01/01/26-00:00:00"
    outputs = [t.name for t in stage.outputs]
    RunResults([(runner, [IterationResult({n: it[n] for n in outputs}, runner_name=runner) for it in iterations])]
               ).save(str(path))
    inner = next(n for n in iterations[0] if n not in outputs)
    found = target_results(kf.open_kit(kit), "fp16", stage)
    assert found.runner_name == runner and not found.stood_in and set(found.frames["frame_000"]) == set(outputs)
    why = found.why_absent("frame_000", inner)
    assert "engine's outputs only" in why and kf.TRTEXEC_SCRIPT in why and "fused" not in why
    assert any("turns on no unfused debug tensor" in n for n in found.notes)
