"""`cpdebug eval` end to end (the CLI, run in process): real scenes on disk, torch and ONNX Runtime, JSON/HTML,
errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug as run_cli
from tests.pillars032 import TINY_032

pytestmark = pytest.mark.needs("nuscenes-devkit")

ROOT = Path(__file__).resolve().parents[2]


def cpdebug(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=ROOT)


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory) -> Path:
    from cp_debug.data.scene_set import write_scene_set
    from cp_debug.data.scenes import heldout_seeds
    from cp_debug.models.centerpoint.presets import get_preset

    d = tmp_path_factory.mktemp("scenes")
    write_scene_set(get_preset("tiny"), d, heldout_seeds(2))
    return d


@pytest.fixture(scope="module")
def one_scene(tmp_path_factory) -> Path:
    """The first held-out scene alone, on TINY_032's +-25.6 m, for the runs of the demo weights on 0.32 m pillars
    (a 160 x 160 grid, about 1 CPU s a pass): the scene of the range that model covers (the demo weights find 16
    boxes in it, 5 with no two within 2 m in tiny's +-12.8 m scene: too few for the --budget check's kept
    neighbours); one scene carries the gates' figures as two do (torch's mAP 0.996 on it)."""
    from cp_debug.data.scene_set import write_scene_set
    from cp_debug.data.scenes import heldout_seeds
    from cp_debug.models.centerpoint.presets import get_preset

    d = tmp_path_factory.mktemp("scene")
    write_scene_set(get_preset(TINY_032), d, heldout_seeds(1))
    return d


@pytest.fixture(scope="module")
def torch_ort(scene_dir, tmp_path_factory):
    """torch and ort over the scenes, plus a deployment's file: the ground truth with logit-valued scores."""
    from cp_debug.data.infos import read_infos
    from cp_debug.eval.boxes import SampleBoxes
    from cp_debug.eval.results_format import write_results
    from cp_debug.lidar.space import CLASS_NAMES

    out = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    logits = {s.token: SampleBoxes(s.boxes, s.labels, rng.normal(0.0, 2.0, len(s.boxes)))
              for s in read_infos(scene_dir)}
    write_results(out / "logits.json", logits, CLASS_NAMES)
    r = cpdebug("eval", "--preset", "tiny", "--backends", "torch,ort", "--scenes", str(scene_dir),
                "--detections", str(out / "logits.json"), "--json", str(out / "e.json"), "--html", str(out / "e.html"),
                "--quiet")
    assert r.returncode == 4, r.stderr  # the logits file's boxes change far beyond FP16's noise: degraded
    return r, json.loads((out / "e.json").read_text()), out


def test_torch_and_ort_fp32_agree_and_the_json_recomputes(torch_ort, scene_dir):
    from cp_debug.eval.devkit import default_range, evaluate
    from cp_debug.eval.results_format import parse_results
    from cp_debug.models.centerpoint.presets import get_preset

    r, data, out = torch_ort
    assert "mAP" in r.stdout and "ort vs torch" in r.stdout
    assert r.stderr == ""  # --quiet: nothing of ours, and third-party text (ORT's C++ log, warnings) is caught
    assert data["third_party_warnings"] == []
    m = data["metrics"]
    assert abs(m["ort"]["mAP"] - m["torch"]["mAP"]) <= 0.01
    total = data["diffs"]["ort"]["total"]
    assert total["reference"] > 0 and total["max_centre_shift"] < 0.01 and total["missing"] + total["extra"] <= 1
    assert set(data["ground_truth"]) == set(data["detections"]["torch"]) == {p.stem.split(".")[0] for p in
                                                                            (scene_dir / "points").iterdir()}
    # Anyone can recompute the metrics from the JSON alone, with the devkit.
    cfg = get_preset("tiny")
    dets, _ = parse_results({"meta": {}, "results": data["detections"]["torch"]}, cfg.class_names)
    gt, _ = parse_results({"meta": {}, "results": data["ground_truth"]}, cfg.class_names)
    again = evaluate({t: type(sb)(sb.boxes, sb.labels) for t, sb in gt.items()}, dets, cfg.class_names,
                     class_range=default_range(cfg.point_cloud_range))
    assert again.mean_ap == pytest.approx(m["torch"]["mAP"], abs=1e-9)
    assert again.nds == pytest.approx(m["torch"]["NDS"], abs=1e-9)
    html = (out / "e.html").read_text()
    assert "data:image/png;base64," in html and "ort vs torch" in html


def test_logit_scores_in_a_results_file_get_the_sigmoid_diagnosis(torch_ort):
    _, data, _ = torch_ort
    assert data["backends"] == ["torch", "ort", "logits.json"]
    kinds = {d["kind"]: d for d in data["diagnoses"]["logits.json"]}
    assert "logits" in kinds and "without sigmoid" in kinds["logits"]["message"]
    assert kinds["logits"]["evidence"]["candidate_scores"]["min"] < 0
    # The file's boxes are the ground truth itself: every GT box is found, whatever its score.
    per_class = data["metrics"]["logits.json"]["per_class"]
    assert all(c["num_detections"] == c["num_gt"] for c in per_class.values())
    assert data["metrics"]["logits.json"]["mATE"] == pytest.approx(0.0, abs=1e-6)
    v = data["verdicts"]["logits.json"]
    assert v["outcome"] == "degraded" and v["precision"] == "fp16" and data["outcome"] in ("degraded", "diverged")
    assert "beyond 0.031 of the score threshold" in v["reason"] and v["scans_beyond_precision"] == 2


def test_bad_detections_file_and_unavailable_backend_exit_with_one_line(scene_dir, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"meta": {}, "results": {"not_a_scene": []}}))
    r = cpdebug("eval", "--preset", "tiny", "--scenes", str(scene_dir), "--detections", str(path), "-q")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "match no scene" in lines[0]
    path.write_text(json.dumps({"results": {}}))
    r = cpdebug("eval", "--preset", "tiny", "--scenes", str(scene_dir), "--detections", str(path), "-q")
    assert r.returncode == 2 and "missing top-level key 'meta'" in r.stderr
    import torch

    if not torch.cuda.is_available():
        r = cpdebug("eval", "--preset", "tiny", "--scenes", str(scene_dir), "--backends", "torch,torch-cuda", "-q")
        assert r.returncode == 3 and len(r.stderr.strip().splitlines()) == 1
    r = cpdebug("eval", "--preset", "tiny", "--backends", "torch,tensorflow")
    assert r.returncode == 2 and "unknown backend spec" in r.stderr


def test_the_seeds_case_logits_with_missed_boxes_print_the_diagnosis_not_a_traceback(scene_dir, tmp_path):
    """A deployment that reads heatmap logits and misses boxes: the devkit's own assert used to end the run."""
    from cp_debug.data.infos import read_infos
    from cp_debug.eval.boxes import SampleBoxes
    from cp_debug.eval.results_format import write_results
    from cp_debug.lidar.space import CLASS_NAMES

    rng = np.random.default_rng(1)
    dets = {}
    for s in read_infos(scene_dir):
        keep = np.arange(len(s.boxes)) % 2 == 0  # half the objects missed: recall stops short of 1
        dets[s.token] = SampleBoxes(s.boxes[keep], s.labels[keep], rng.normal(-2.0, 1.5, int(keep.sum())))
    write_results(tmp_path / "logits.json", dets, CLASS_NAMES)
    r = cpdebug("eval", "--preset", "tiny", "--scenes", str(scene_dir), "--detections", str(tmp_path / "logits.json"),
                "--json", str(tmp_path / "e.json"), "-q")
    assert r.returncode == 4, r.stderr  # degraded: half the boxes lost, the scores moved
    assert "Traceback" not in r.stderr + r.stdout
    data = json.loads((tmp_path / "e.json").read_text())
    assert [d["kind"] for d in data["diagnoses"]["logits.json"]][0] == "logits"
    assert any("outside [0, 1]" in n and "rank" in n for n in data["notes"]["logits.json"])
    assert 0.0 < data["metrics"]["logits.json"]["mAP"] < 1.0


def test_t4_style_infos_with_sweeps_and_a_data_root(scene_dir, tmp_path):
    """An AWML-style info file away from its data: --data-root joins the lidar paths; each scan gets its sweep."""
    import pickle

    data = pickle.loads((scene_dir / "infos.pkl").read_bytes())
    paths = [e["lidar_points"]["lidar_path"] for e in data["data_list"]]
    for i, e in enumerate(data["data_list"]):
        e["timestamp"] = 100.0 + i
        e["lidar_sweeps"] = [{"timestamp": 99.95 + i, "lidar_points": {
            "lidar_path": paths[1 - i], "lidar2sensor": np.eye(4).tolist()}}]  # the other scan as its sweep
    info = tmp_path / "t4dataset_x_infos_test.pkl"
    info.write_bytes(pickle.dumps(data))
    from cp_debug.data.infos import read_infos
    from cp_debug.eval.boxes import SampleBoxes
    from cp_debug.eval.results_format import write_results
    from cp_debug.lidar.space import CLASS_NAMES

    write_results(tmp_path / "gt.json", {s.token: SampleBoxes(s.boxes, s.labels, np.ones(len(s.boxes)))
                                         for s in read_infos(scene_dir)}, CLASS_NAMES)
    args = ("eval", "--preset", "tiny", "--scenes", str(info), "--detections", str(tmp_path / "gt.json"), "-q")
    r = cpdebug(*args)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--data-root" in r.stderr
    r = cpdebug(*args, "--data-root", str(scene_dir), "--json", str(tmp_path / "e.json"), "--tolerance-mode", "fixed")
    assert r.returncode == 0, r.stderr  # fixed: no verdict, done (the ground truth with score 1 is not the model's)
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["backends"] and data["verdicts"] == {} and data["outcome"] is None
    assert data["settings"]["tolerance_mode"] == "fixed"



@pytest.mark.slow  # three eval runs (about 6 s of CPU)
def test_gates_exit_1_naming_the_broken_gate_with_both_figures(one_scene, tmp_path):
    """The tiny model with the demo's trained weights: ort holds tight gates (exit 0 with --tolerance-mode fixed: the
    gates alone); a deployment that lost every other box of the reference's breaks --max-map-drop and --min-match
    (exit 1, one line naming them with both figures, whatever the verdict: degraded) while --max-nds-drop 1 holds."""
    from cp_debug.eval.boxes import SampleBoxes
    from cp_debug.eval.results_format import parse_results, write_results
    from cp_debug.lidar.space import CLASS_NAMES
    from cp_debug.models.centerpoint.source import shipped_checkpoint

    model = ("--config", TINY_032, "--checkpoint", str(shipped_checkpoint("demo")), "--scenes", str(one_scene), "-q")
    r = cpdebug("eval", *model, "--backends", "torch,ort", "--max-map-drop", "0.01", "--max-nds-drop", "0.01",
                "--min-match", "0.95", "--json", str(tmp_path / "ref.json"), "--tolerance-mode", "fixed")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    data = json.loads((tmp_path / "ref.json").read_text())
    assert [g["option"] for g in data["gates"]] == ["--max-map-drop", "--max-nds-drop", "--min-match"]
    assert not any(g["broken"] for g in data["gates"]) and data["metrics"]["torch"]["mAP"] > 0.3
    torch_boxes, _ = parse_results({"meta": {}, "results": data["detections"]["torch"]}, CLASS_NAMES)
    half = {t: SampleBoxes(sb.boxes[::2], sb.labels[::2], sb.scores[::2]) for t, sb in torch_boxes.items()}
    write_results(tmp_path / "half.json", half, CLASS_NAMES)
    args = ("eval", *model, "--backends", "torch", "--detections", str(tmp_path / "half.json"))
    r = cpdebug(*args, "--max-map-drop", "0.01", "--max-nds-drop", "1", "--min-match", "0.9",
                "--json", str(tmp_path / "e.json"))
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cpdebug: gate broken: --max-map-drop 0.01: half.json's mAP drop "
                                                   "vs torch ("), r.stderr
    assert "--min-match 0.9: half.json's box match rate vs torch (" in lines[0] and "below the limit" in lines[0]
    assert "--max-nds-drop" not in lines[0]  # it holds
    gates = {g["option"]: g for g in json.loads((tmp_path / "e.json").read_text())["gates"]}
    assert gates["--max-map-drop"]["broken"] and gates["--max-map-drop"]["value"] > 0.01
    assert gates["--min-match"]["broken"] and 0.4 <= gates["--min-match"]["value"] <= 0.6
    assert not gates["--max-nds-drop"]["broken"]
    assert json.loads((tmp_path / "e.json").read_text())["outcome"] == "degraded"  # the gate's 1 wins over its 4
    r = cpdebug(*args, "--min-match", "95")
    assert r.returncode == 2 and "a match rate lies in 0..1" in r.stderr
    # --budget: the same figures, each broken limit on its own line (the match within 2 m pairs some reference boxes
    # with a kept neighbour: P95 centre shift ~0.7 m, within a 2 m limit)
    (tmp_path / "b.yaml").write_text("min_match_rate: 0.9\nmax_p95_centre_shift: 2\nno_frame_diverged: true\n")
    r = cpdebug(*args, "--budget", str(tmp_path / "b.yaml"), "--json", str(tmp_path / "b.json"))
    broken = [x for x in r.stderr.splitlines() if x.startswith("cpdebug: budget broken: ")]
    assert r.returncode == 1 and len(broken) == 1, r.stderr
    assert broken[0].endswith("below the limit") and "min_match_rate 0.9: half.json vs torch: box match" in broken[0]
    checks = {c["option"]: c for c in json.loads((tmp_path / "b.json").read_text())["budget"]["checks"]}
    assert 0 < checks["max_p95_centre_shift"]["value"] < 2 and not checks["no_frame_diverged"]["broken"]
    (tmp_path / "b.yaml").write_text("max_head_error: 0.05\n")
    r = cpdebug(*args, "--budget", str(tmp_path / "b.yaml"))
    assert r.returncode == 2 and "eval cannot measure max_head_error" in r.stderr


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow  # two eval runs (about 40 s of CPU)
def test_verdicts_within_precision_degraded_and_diverged_give_the_exit_code(scene_dir, tmp_path):
    """The tiny model with the demo's trained weights: FP16 in ONNX Runtime keeps every box within FP16's noise
    (exit 0); a deployment that kept every other box is degraded (boxes lost beyond the score threshold's band); one
    that gives no box at all is diverged (exit 1, the worst candidate's)."""
    from cp_debug.eval.boxes import SampleBoxes
    from cp_debug.eval.results_format import parse_results, write_results
    from cp_debug.lidar.space import CLASS_NAMES
    from cp_debug.models.centerpoint.source import shipped_checkpoint

    model = ("--preset", "tiny", "--checkpoint", str(shipped_checkpoint("demo")), "--scenes", str(scene_dir), "-q")
    r = cpdebug("eval", *model, "--backends", "torch,ort-cpu-fp16", "--json", str(tmp_path / "fp16.json"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    data = json.loads((tmp_path / "fp16.json").read_text())
    v = data["verdicts"]["ort-cpu-fp16"]
    assert v["outcome"] == data["outcome"] == "within_precision" and v["precision"] == "fp16"
    assert v["scans"] == 2 and v["scans_beyond_precision"] == 0 and data["settings"]["tolerance_mode"] == "model"
    assert data["diffs"]["ort-cpu-fp16"]["total"]["max_abs_score_change"] > 0  # FP16 did change the scores
    assert "verdict ort-cpu-fp16: within precision (judged at fp16" in r.stdout

    torch_boxes, _ = parse_results({"meta": {}, "results": data["detections"]["torch"]}, CLASS_NAMES)
    write_results(tmp_path / "half.json", {t: SampleBoxes(sb.boxes[::2], sb.labels[::2], sb.scores[::2])
                                           for t, sb in torch_boxes.items()}, CLASS_NAMES)
    write_results(tmp_path / "none.json", {t: SampleBoxes.empty() for t in torch_boxes}, CLASS_NAMES)
    for name, code, outcome, why in (("half.json", 4, "degraded", "lost/added beyond"),
                                     ("none.json", 1, "diverged", "no box on any scan")):
        r = cpdebug("eval", *model, "--backends", "torch", "--detections", str(tmp_path / name), "--json", "-")
        assert r.returncode == code, (name, r.stderr)
        v = json.loads(r.stdout)["verdicts"][name]
        assert v["outcome"] == outcome and why in v["reason"], v
