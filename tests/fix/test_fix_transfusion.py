"""`cpdebug fix --recipe transfusion`: the FP16 fix of TransFusion-L's one graph, judged flip-aware (the CLI in
process). The planted cross-attention fault (QK^T logits of 1.02e5, tests/recipes/transfusion/planted.py) is fixed
by keeping its MatMul and Softmax in FP32, and the written transfusion.onnx holds on a frame the search never saw
where the plain FP16 graph diverges, and `fix --check` holds on that folder and names a graph changed since (one fix,
written once for the module); the healthy tiny model needs no fix; what the recipe does not take is one line,
exit 2, nothing written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from cp_debug.errors import ExitCode
from tests.fix.cli import cpdebug
from tests.recipes.transfusion.planted import planted_checkpoint

ATTN = "transfusion.onnx:/pts_bbox_head/decoder.0/cross_attn/attn/"
DECOY = "transfusion.onnx:/pts_bbox_head/heatmap_head/heatmap_head.1/Conv"  # FP16-safe: never kept


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The planted cross-attention fault fixed once for the module: (the fix folder, the run's --json document)."""
    tmp = tmp_path_factory.mktemp("tf_fix")
    ckpt = planted_checkpoint(tmp / "planted.pth", "attention")
    out = tmp / "fix"
    # the candidates cut to three (one a decoy) to keep the test short; the full ranking finds the same two
    candidates = ",".join([DECOY, ATTN + "MatMul_3", ATTN + "Softmax"])
    proc = cpdebug("--recipe", "transfusion", "--preset", "transfusion-tiny", "--checkpoint", ckpt,
                   "--backends", "torch,ort-cpu-fp16", "--n", 1, "--verify-n", 1, "--search-nodes",
                   candidates, "--out", out, "--json", tmp / "run.json", "--quiet")
    assert proc.returncode == ExitCode.OK, proc.stdout + proc.stderr
    return out, json.loads((tmp / "run.json").read_text())


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow
def test_planted_cross_attention_is_fixed_and_the_written_graph_holds_where_plain_fp16_does_not(planted):
    out, doc = planted
    assert doc["recipe"] == "transfusion" and doc["status"] == "found"
    assert sorted(doc["set"]["keep_fp32"]) == [ATTN + "MatMul_3", ATTN + "Softmax"]
    assert doc["set"]["modules"] == ["pts_bbox_head.decoder.0.cross_attn.attn"]
    v = doc["verification"]
    assert v["holds"] and doc["held_out_verification"] and v["frames"]["first"] == 1
    assert v["plain"]["outcome"] == "diverged" and v["fixed"]["outcome"] == "within_precision"
    assert {p.name for p in out.iterdir()} >= {"transfusion.onnx", "fp32.transfusion.onnx", "fix.json", "README.md",
                                               "nodes_to_exclude.json"}
    # the written file itself, at FP16 on the CPU as the bisect runs ort-cpu-fp16 (float16 rounded at every node)
    from cp_debug.backends import make_runner
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.models.transfusion.presets import get_preset
    from cp_debug.recipes.transfusion.export import example_voxels
    from cp_debug.recipes.transfusion.interface import DEPLOY_INPUTS

    feed = {k: t.numpy() for k, t in zip(DEPLOY_INPUTS, example_voxels(get_preset("transfusion-tiny")))}
    with make_runner(BackendSpec.parse("ort-cpu"), onnx_model=out / "transfusion.onnx") as fixed:
        got = fixed.infer(feed)
        assert fixed.precision_report().effective == "mixed"  # FP16 with the kept nodes FP32
    assert all(np.isfinite(got[n]).all() for n in got), {n: int(np.isnan(got[n]).sum()) for n in got}


@pytest.mark.slow
def test_check_of_the_fix_holds_here_and_names_a_graph_changed_since(planted, tmp_path):
    import onnx

    from cp_debug.precision.fp16 import convert_to_fp16

    out, doc = planted
    proc = cpdebug("--check", out, "--json", "-", "--quiet")
    assert proc.returncode == ExitCode.OK, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["holds"] and report["recorded_holds"] and report["modified_files"] == []
    assert report["changed_figures"] == [] and report["changed_versions"] == []  # same machine, same figures
    v = report["verification"]
    assert v["frames"]["tokens"] == doc["verification"]["frames"]["tokens"] and v["plain"] is None
    assert v["fixed"]["outcome"] == "within_precision" and v["fixed"]["flips"] == doc["verification"]["fixed"]["flips"]
    # the deployed graph replaced by the plain FP16 conversion (the fix undone): named, and it no longer holds
    copy = tmp_path / "fix"
    shutil.copytree(out, copy)
    onnx.save(convert_to_fp16(onnx.load(str(copy / "fp32.transfusion.onnx"))), str(copy / "transfusion.onnx"))
    proc = cpdebug("--check", copy, "--quiet")
    assert proc.returncode == ExitCode.NOT_VERIFIED, proc.stdout + proc.stderr
    # (the first line, with the tmp path in it, may pass 200 columns and wrap: its words are read, not its breaks)
    said = " ".join(proc.stdout.split())
    assert "does NOT hold" in said and "files modified since written: transfusion.onnx" in said
    assert "figures changed: worst_rel_rmse" in said and "proposal flip(s)" in said


def test_a_healthy_transfusion_needs_no_fix(tmp_path):
    """One candidate given: the search's first run (nothing kept) is the claim, whatever the candidates; given, they
    are not ranked by a pass over every tensor of the FP32 graph."""
    out = tmp_path / "fix"
    proc = cpdebug("--recipe", "transfusion", "--preset", "transfusion-tiny", "--backends", "torch,ort-cpu-fp16",
                   "--n", 1, "--search-nodes", DECOY, "--out", out, "--json", tmp_path / "run.json", "--quiet")
    assert proc.returncode == ExitCode.OK, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc["status"] == "not_needed" and doc["set"]["keep_fp32"] == []
    assert doc["verification"]["holds"] and doc["outcome"] == "within_precision"
    assert "nothing to fix" in proc.stdout
    assert (out / "transfusion.onnx").is_file()


@pytest.mark.parametrize("args, said", [
    (("--backends", "torch,ort-cpu-int8"), "INT8 of TransFusion-L is not built"),
    (("--max-lost-boxes", "0"), "--max-lost-boxes: CenterPoint's"),
    (("--from-bisect", "report.json"), "--from-bisect / --from-sweep start from a CenterPoint run"),
])
def test_what_the_transfusion_fix_does_not_take_is_one_line_and_exit_2(tmp_path, args, said):
    out = tmp_path / "fix"
    proc = cpdebug("--recipe", "transfusion", "--preset", "transfusion-tiny", *args, "--out", out)
    assert proc.returncode == ExitCode.BAD_INPUT, proc.stdout + proc.stderr
    assert said in proc.stdout + proc.stderr
    assert not out.exists()


ASKED = 99  # the exit the recorder ends each run with, in place of a search: the request was all the test wanted


def test_keep_fp32_of_transfusion_is_the_fix_request_and_what_it_does_not_take_is_exit_2(tmp_path, monkeypatch):
    """`keep-fp32 --recipe transfusion` is a thin mapping onto `fix --recipe transfusion`: the same request (judge,
    search, frames, candidates as FILE:NODE), nothing else searched; its own options that do not apply are one line."""
    import typer

    import cp_debug.fix.run
    from tests.cli_run import cpdebug as run

    asked = []

    def record(req, progress=None):
        asked.append(req)
        raise typer.Exit(ASKED)  # a clean end (an exception of its own was a bug of cp_debug's: exit 70 and a
        #                          cpdebug-internal-*.txt left in the temporary folder by every run of this test)

    monkeypatch.setattr(cp_debug.fix.run, "run_fix", record)
    common = ("--recipe", "transfusion", "--preset", "transfusion-tiny", "--n", "2", "--quiet")
    ends = [run("keep-fp32", *common, "--backends", "ort-cpu-fp16", "--search-nodes",
                "/a/MatMul,transfusion.onnx:/b/Softmax"),
            cpdebug(*common, "--backends", "torch,ort-cpu-fp16", "--search-nodes",
                    "transfusion.onnx:/a/MatMul,transfusion.onnx:/b/Softmax", "--out", tmp_path / "fix")]
    assert [p.returncode for p in ends] == [ASKED, ASKED], [p.stdout + p.stderr for p in ends]
    keep, fix = asked
    assert keep.candidates == ("transfusion.onnx:/a/MatMul", "transfusion.onnx:/b/Softmax")
    assert keep.source == {"from": "keep-fp32"}
    from dataclasses import replace

    assert replace(keep, source=fix.source) == fix
    for args, said in ((("--onnx", tmp_path / "m.onnx"), "--onnx: not for keep-fp32 --recipe transfusion"),
                       (("--search-nodes", "all"), "--search-nodes all"),
                       (("--backends", "trt-fp16"), "ONNX Runtime FP16")):
        proc = run("keep-fp32", *common, *args)
        assert proc.returncode == ExitCode.BAD_INPUT and said in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    proc = run("keep-fp32", "--preset", "transfusion-tiny", "--out", tmp_path / "x")
    assert proc.returncode == ExitCode.BAD_INPUT and "for --recipe transfusion only" in proc.stdout + proc.stderr
    assert len(asked) == 2 and not (tmp_path / "x").exists()
