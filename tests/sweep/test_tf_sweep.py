"""`cpdebug sweep --recipe transfusion` end to end (the CLI, in process, real ONNX Runtime): TransFusion-L's frames
ranked by the node's boxes, the proposal flips counted, the worst frame bisected with the TransFusion bisect; the
options it does not take refused before anything is written. One sweep, shared by the tests of this module."""

from __future__ import annotations

import json

import pytest

from tests.cli_run import cpdebug

pytestmark = [pytest.mark.needs("nuscenes-devkit"), pytest.mark.slow]  # slow: scheduled first under xdist

ARGS = ("sweep", "--recipe", "transfusion", "--preset", "transfusion-tiny", "--random-weights", "--n", "2",
        "--backends", "torch,ort-cpu-fp16", "--bootstrap", "10", "-q")


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("tf-sweep") / "out"
    # fixed mode: FP16 lies beyond the element-wise tolerance, so a frame is flagged and bisected
    res = cpdebug(*ARGS, "--out", out, "--tolerance-mode", "fixed", "--bisect-top", "1")
    return res, out, json.loads((out / "sweep.json").read_text())


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_tf_sweep_ranks_the_node_boxes_and_bisects_the_worst(swept):
    res, out, doc = swept
    assert res.returncode == 1, res.stderr  # flagged frames: exit 1
    assert doc["model"]["recipe"] == "transfusion" and doc["settings"]["level"] == "stage"
    assert [f["rank"] for f in doc["frames"]] == [1, 2]
    top = doc["frames"][0]
    det = top["detections"]["ort-cpu-fp16"]
    assert {"lost", "added", "matched", "flips", "score_cuts"} <= set(det)
    assert det["score_cuts"][0] == pytest.approx(0.1)  # the node's score_threshold, not AWML's 0
    assert set(det["by_class"]) == {"car", "truck", "bus", "bicycle", "pedestrian"}
    assert {p["probe"] for p in doc["probes"]["ort-cpu-fp16"]} >= {"pts_bbox_head.decoder.0.cross_attn",
                                                                   "pts_backbone.blocks.1", "cls_score"}
    report = json.loads((out / "bisect" / f"{top['token']}.json").read_text())  # schema-checked by cpdebug()
    assert report["model"]["recipe"] == "transfusion" and report["model"]["points"] == f"sweep frame {top['token']}"
    assert report["decisions"]["ort-cpu-fp16"][0]["name"] == "proposal selection (top-K)"
    assert doc["root_cause_counts"]["bisected"] == 1
    assert set(doc["metrics"]["devkit"]) == {"torch", "ort-cpu-fp16"}


@pytest.mark.parametrize("extra, named", [(("--int8", "."), "--int8"), (("--ray", "local"), "--ray"),
                                          (("--backends", "torch,ort-cpu-int8"), "INT8")])
def test_tf_sweep_refuses_what_it_does_not_take(tmp_path, extra, named):
    args = list(ARGS)
    if extra[0] == "--backends":  # in place of the sweep's own (an option given twice is refused on its own)
        at = args.index("--backends")
        del args[at:at + 2]
    res = cpdebug(*args, "--out", tmp_path / "out", *extra)
    assert res.returncode == 2 and named in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert not (tmp_path / "out").exists()
