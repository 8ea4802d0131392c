"""`cpdebug eval --recipe transfusion` (the CLI, in process, real ONNX Runtime) on the trained demo weights: nuScenes
metrics per backend on the boxes Autoware's node makes, TransFusion's classes, a verdict; --int8 refused."""

from __future__ import annotations

import json

import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.needs("nuscenes-devkit")


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_tf_eval_scores_the_node_boxes_per_backend(tmp_path):
    """One scene: no check rests on their number (mAP 0.63 per lane on it, 0.47 on two)."""
    out = tmp_path / "eval.json"
    res = cpdebug("eval", "--recipe", "transfusion", "--preset", "transfusion-demo", "--backends",
                  "torch,ort-cpu-fp16", "--n", "1", "--json", out, "-q")
    assert res.returncode in (0, 4), res.stderr  # within precision or degraded, never diverged
    doc = json.loads(out.read_text())
    from cp_debug.models.transfusion.presets import get_preset

    assert doc["class_names"] == list(get_preset("transfusion-demo").class_names)
    assert "trained demo weights" in doc["weights"] and doc["settings"]["recipe"] == "transfusion"
    assert doc["settings"]["score_threshold"] == pytest.approx(0.1)  # the node's, not AWML's 0
    for lane in ("torch", "ort-cpu-fp16"):
        assert doc["metrics"][lane]["mAP"] > 0.3  # trained weights find the synthetic objects
    assert doc["verdicts"]["ort-cpu-fp16"]["outcome"] in ("within_precision", "degraded")


def test_tf_eval_refuses_int8(tmp_path):
    res = cpdebug("eval", "--recipe", "transfusion", "--preset", "transfusion-demo", "--int8", tmp_path,
                  "--json", tmp_path / "e.json")
    assert res.returncode == 2 and "--int8" in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert not (tmp_path / "e.json").exists()
