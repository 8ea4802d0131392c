"""`cpdebug replay` names the glue a deployment got wrong: real rosbag2 files (sqlite3 and mcap, written with
rosbags' writer) of synthetic clouds and DetectedObjects made from the reference's own detections with one
planted fault per bag; a CUDA-CenterPoint folder and an mmdet3d results pkl; broken inputs.

The model is the tiny preset (160x160 grid) with the demo preset's trained weights (same modules), so that
its boxes are a trained detector's; one runner is shared by every in-process replay, so each frame's engine
runs happen once.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags.rosbag2")

from cp_debug.data.rosbag import LIDAR_TOPIC, Cloud, write_bag  # noqa: E402
from cp_debug.recipes import catalog  # noqa: E402
from cp_debug.data.scenes import heldout_seeds, make_scene, scene_token  # noqa: E402
from cp_debug.models.centerpoint.presets import get_preset  # noqa: E402
from cp_debug.lidar.boxes import Detections
from cp_debug.models.centerpoint.decode import decode
from cp_debug.models.centerpoint.source import load_model, shipped_checkpoint  # noqa: E402
from cp_debug.replay.engine import ReferenceRunner, ReplayOptions  # noqa: E402
from cp_debug.replay.session import replay  # noqa: E402
from cp_debug.replay.sources import frames_from_bag, frames_from_files  # noqa: E402
from tests.cli_run import cpdebug as run_cli  # noqa: E402
from tests.pillars032 import TINY_032  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CFG = get_preset(TINY_032)  # the demo weights on the pillars they were trained on
S = 1_000_000_000
# Two frames, each fault planted in both: a third cost ~12 CPU s of engine runs (seven variant re-runs of 160 x 160
# each) and no check rests on the number.
SEEDS = list(heldout_seeds(2))
NODE_SEED = 1_732_377_600  # the node seeds its shuffle with the time: a seed the replay does not try


def cpdebug(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=ROOT)


def _with(d: Detections, boxes=None, scores=None) -> Detections:
    return Detections(np.asarray(d.boxes if boxes is None else boxes, np.float32),
                      np.asarray(d.scores if scores is None else scores, np.float32), d.labels, d.class_names)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The runner, the clouds, the reference's head maps and boxes per frame, and the cap the shuffled fault used."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    loaded = load_model(CFG, shipped_checkpoint("demo"))
    clouds = [make_scene(CFG, s).points for s in SEEDS]
    with ReferenceRunner(loaded.model, CFG, catalog.recipe().plugin("replay")) as runner:
        refs = [runner.run(c) for c in clouds]
        cap = int(0.83 * np.median([runner.voxel_count(c) for c in clouds]))
        yield runner, clouds, refs, cap, loaded.weights, tmp_path_factory.mktemp("bags"), loaded.model
    torch.set_num_threads(threads)


def _planted(world, fault: str) -> list[Detections]:
    """The deployment's boxes per frame: the reference's, with one glue fault done as deployments do it."""
    runner, clouds, refs, cap, _, _, model = world
    out = []
    for c, r in zip(clouds, refs):
        d, b = r.detections, r.detections.boxes.astype(np.float64)
        if fault == "clean":
            out.append(d)
        elif fault == "yaw":  # Autoware's `-yaw - pi/2` applied to a model whose yaw needs no conversion
            b[:, 6] = np.arctan2(np.sin(-b[:, 6] - math.pi / 2), np.cos(-b[:, 6] - math.pi / 2))
            out.append(_with(d, b))
        elif fault == "sigmoid":  # the heatmap read as scores, thresholded as logits
            out.append(decode(r.head, CFG, heat_activation="none"))
        elif fault == "z":  # the bottom z published as the pose position (which is the centre)
            b[:, 2] -= b[:, 5] / 2
            out.append(_with(d, b))
        elif fault == "shuffle":  # the node's time-seeded shuffle, with a voxel cap the cloud exceeds
            out.append(runner.run(c, order_seed=NODE_SEED, max_voxels=cap).detections)
        elif fault == "logit":  # the reference's own boxes, each published with its score before the sigmoid
            out.append(_with(d, scores=np.log(d.scores) - np.log1p(-d.scores)))
        elif fault == "sigmoid twice":  # a second sigmoid on the published score
            out.append(_with(d, scores=1 / (1 + np.exp(-d.scores.astype(np.float64)))))
        elif fault == "half":  # the score scaled by 0.5 on the way out
            out.append(_with(d, scores=0.5 * d.scores))
        elif fault == "node":  # the node's own post-processing: score >= 0.35 for every class (its shipped files)
            keep = d.scores >= 0.35
            out.append(Detections(d.boxes[keep], d.scores[keep], d.labels[keep], d.class_names))
        elif fault == "moved":  # an engine fault: every box 0.5 m off, its score as the reference's
            b[:, 0] += 0.5
            out.append(_with(d, b))
        elif fault in ("zero", "legacy"):  # voxel features zero-padded, or processed where raw belongs
            from cp_debug.recipes.centerpoint.pipeline import run_pipeline
            from cp_debug.recipes.centerpoint.stage_runners import torch_stage_runners

            def zero(feats):
                feats = feats.clone()
                feats[..., CFG.in_channels:] = 0.0
                return feats

            def legacy(feats):  # mmdet3d's legacy PillarFeatureNet: f_center computed in place on x, y
                feats = feats.clone()
                c0 = CFG.in_channels + 3
                feats[..., 0], feats[..., 1] = feats[..., c0], feats[..., c0 + 1]
                return feats

            out.append(run_pipeline(CFG, c, *torch_stage_runners(model), capture=False,
                                    feature_transform=zero if fault == "zero" else legacy).detections)
    return out


def _bag(world, fault: str, storage: str) -> Path:
    _, clouds, _, _, _, tmp, _ = world
    stamps = [(i + 1) * S + 123 for i in range(len(clouds))]
    return write_bag(tmp / f"{fault}_{storage}", [Cloud(t, "base_link", c) for t, c in zip(stamps, clouds)],
                     list(zip(stamps, _planted(world, fault))), CFG.class_names, storage=storage)


def _bag_once(world, fault: str, storage: str) -> Path:
    """The bag of `fault`, written on its first use in the session."""
    path = world[5] / f"{fault}_{storage}"
    return path if path.exists() else _bag(world, fault, storage)


def _frames(world, fault: str, storage: str = "sqlite3"):
    return frames_from_bag(_bag_once(world, fault, storage), CFG, lidar_topic=LIDAR_TOPIC,
                           objects_topic="/perception/object_recognition/detection/centerpoint/objects")


EXPECTED = {"clean": "none", "yaw": "yaw", "sigmoid": "sigmoid", "z": "z", "shuffle": "point order + max_voxels",
            "zero": "voxel features", "legacy": "voxel features"}


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.parametrize("fault,storage", [("clean", "sqlite3"), ("yaw", "mcap"), ("sigmoid", "sqlite3"), ("z", "mcap"),
                                           ("shuffle", "sqlite3"), ("zero", "mcap"), ("legacy", "sqlite3")])
def test_replay_names_the_planted_fault(world, fault, storage):
    runner, _, _, cap, weights, _, _ = world
    source = frames_from_bag(_bag_once(world, fault, storage), CFG, lidar_topic=LIDAR_TOPIC,
                             objects_topic="/perception/object_recognition/detection/centerpoint/objects")
    n = len(SEEDS)
    assert f"{n} frame(s) paired by header stamp (exact stamps; {n} exact), 0 cloud(s)" in source.pairing
    report = replay(source, runner, weights, ReplayOptions(seeds=(0, 1), max_voxels=(cap,)))
    assert report.best_family == EXPECTED[fault], report.verdict()
    verdict = report.verdict()
    if fault == "clean":
        assert report.matches_reference and verdict.startswith("100% of the deployment's boxes match the reference")
    elif fault == "shuffle":
        assert "consistent with `point order: shuffled with max_voxels" in verdict
    else:
        assert verdict.startswith("100% of the deployment's boxes match the reference after `")
        assert {"yaw": "y-axis reference", "sigmoid": "missing", "z": "bottom published as the centre",
                "zero": "zero-padded", "legacy": "legacy"}[fault] in report.best_name
        assert report.reference.fraction < 0.5
    assert "point order alone moves" in verdict
    frame = report.to_frame()
    assert len(frame) == n * len(report.scores) and set(frame["token"]) == {f.token for f in source.frames}


@pytest.mark.parametrize("fault, words", [
    ("logit", "the deployment publishes scores in logit space (the heatmap before its sigmoid): apply sigmoid before "
              "thresholding — after `score: published as logits (sigmoid not applied)` 100% of its boxes match"),
    ("sigmoid twice", "the deployment publishes scores through a second sigmoid (every score lands in 0.5–0.73): drop "
                      "the second sigmoid — after `score: sigmoid applied again` 100%"),
    ("half", "the deployment publishes scores as 0.5 × the model's score: publish the model's own score"),
], ids=["logit", "sigmoid-twice", "half"])
def test_replay_names_a_score_transform(world, fault, words):
    runner, _, refs, _, weights, _, _ = world
    report = replay(_frames(world, fault), runner, weights, ReplayOptions(seeds=(0,)))
    verdict = report.verdict()
    assert report.best_family == "score space" and not report.matches_reference, verdict
    boxes = sum(len(r.detections) for r in refs)
    assert words in verdict and f"fitted on {boxes} boxes that match in all but the score, largest residual" in verdict
    assert report.best.variant.params["fit_max_residual"] < 1e-5  # float32 scores through the bag, exactly fitted
    saved = report.to_json()
    assert saved["best_family"] == "score space" and saved["best"]["params"]["fit_boxes"] == boxes


def test_scores_are_not_blamed_for_moved_boxes_nor_found_in_a_clean_recording(world):
    runner, _, _, _, weights, _, _ = world
    opts = ReplayOptions(seeds=(0,))
    moved = replay(_frames(world, "moved", "mcap"), runner, weights, opts)
    assert moved.best_family != "score space" and "the engines themselves differ" in moved.verdict(), moved.verdict()
    assert not any(s.variant.name.startswith("score: scaled") for s in moved.scores)  # nothing to fit a map on
    clean = replay(_frames(world, "clean"), runner, weights, opts)
    assert clean.matches_reference and clean.best_name == "reference glue", clean.verdict()
    assert {s.variant.name for s in clean.scores if s.variant.family == "score space"} == {
        "score: published as logits (sigmoid not applied)", "score: sigmoid applied again"}  # no fitted map


def test_prediction_files_are_judged_the_same_way(world, tmp_path):
    from cp_debug.data.deployed_detections import write_cuda_centerpoint, write_mmdet3d_pkl
    from cp_debug.data.scene_set import write_scene_set

    runner, _, _, _, weights, _, _ = world
    write_scene_set(CFG, tmp_path / "scenes", SEEDS[:2])
    tokens = [scene_token(s) for s in SEEDS[:2]]
    opts = ReplayOptions(seeds=(0,))
    write_cuda_centerpoint(tmp_path / "cc", dict(zip(tokens, _planted(world, "z"))), CFG.class_names)
    report = replay(frames_from_files("cuda-centerpoint", tmp_path / "cc", tmp_path / "scenes", CFG), runner, weights,
                    opts)
    assert report.best_family == "z" and report.best.fraction == 1.0, report.verdict()
    write_mmdet3d_pkl(tmp_path / "r.pkl", dict(zip(tokens, _planted(world, "clean"))))
    report = replay(frames_from_files("mmdet3d-pkl", tmp_path / "r.pkl", tmp_path / "scenes", CFG), runner, weights,
                    opts)
    assert report.matches_reference, report.verdict()
    assert "2 frame(s) paired by token" in report.pairing


def test_cli_replays_a_bag_and_writes_json_parquet_html(world, tmp_path):
    bag = _bag_once(world, "yaw", "sqlite3")
    r = cpdebug("replay", "--list", str(bag))
    assert r.returncode == 0 and LIDAR_TOPIC in r.stdout and "autoware_perception_msgs/msg/DetectedObjects" in r.stdout
    r = cpdebug("replay", str(bag), "--config", TINY_032, "--checkpoint", str(shipped_checkpoint("demo")),
                "--shuffle-seeds", "0", "--n", "1", "--json", str(tmp_path / "r.json"),
                "--parquet", str(tmp_path / "r.parquet"), "--html", str(tmp_path / "r.html"), "-q")
    assert r.returncode == 0, r.stderr
    assert "y-axis reference" in r.stdout and "verdict" in r.stdout
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["best_family"] == "yaw" and data["settings"]["frames"] == 1
    import pandas as pd

    assert len(pd.read_parquet(tmp_path / "r.parquet")) == len(data["frames"])
    assert "data:image/png;base64," in (tmp_path / "r.html").read_text()


def test_broken_inputs_are_one_line_and_write_nothing(world, tmp_path):
    _, clouds, refs, _, _, _, _ = world
    out = ["--json", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html")]
    # DetectedObjects 1 ms after its cloud: no cloud with its stamp.
    bag = write_bag(tmp_path / "late", [Cloud(S, "base_link", clouds[0][::10])], [(S + 10**6, refs[0].detections)],
                    CFG.class_names)
    r = cpdebug("replay", str(bag), *out)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "have no cloud" in r.stderr and "1.000 ms away" in r.stderr and "--stamp-tolerance-ms" in r.stderr
    r = cpdebug("replay", str(bag), "--lidar-topic", "/sensing/lidar/top/pointcloud", *out)
    assert r.returncode == 2 and "has no topic /sensing/lidar/top/pointcloud" in r.stderr
    r = cpdebug("replay", str(bag), "--objects-topic", LIDAR_TOPIC, *out)
    assert r.returncode == 2 and "carries sensor_msgs/msg/PointCloud2, not autoware_perception_msgs" in r.stderr
    data = next(p for p in bag.iterdir() if p.suffix == ".db3")
    data.write_bytes(data.read_bytes()[:4096])
    r = cpdebug("replay", str(bag), *out)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "r.html").exists()


def test_mmdet3d_0x_results_without_tokens_follow_the_info_order(world, tmp_path):
    import pickle

    from cp_debug.data.scene_set import write_scene_set

    runner, _, refs, _, weights, _, _ = world
    write_scene_set(CFG, tmp_path / "scenes", SEEDS[:1])
    d = refs[0].detections
    (tmp_path / "r.pkl").write_bytes(pickle.dumps([{"pts_bbox": {"boxes_3d": d.boxes, "scores_3d": d.scores,
                                                                 "labels_3d": d.labels}}]))
    source = frames_from_files("mmdet3d-pkl", tmp_path / "r.pkl", tmp_path / "scenes", CFG)
    assert [f.token for f in source.frames] == [scene_token(SEEDS[0])]
    assert replay(source, runner, weights, ReplayOptions(seeds=(0,))).matches_reference


def test_params_give_the_nodes_own_thresholds_instead_of_a_guess(world):
    """--params: Autoware's shipped files (tests/data/autoware) give the node's thresholds (0.35 per class and
    range), NMS and voxel cap; the variant built from them is the glue that explains the recording."""
    from cp_debug.replay.variants import NodeGlue

    runner, _, refs, _, weights, _, _ = world
    data = ROOT / "tests" / "data" / "autoware"
    node = NodeGlue.read([data / "centerpoint_short_range_ml_package.param.yaml",
                          data / "centerpoint_common.param.yaml"], catalog.recipe().plugin("replay").AUTOWARE_NODE)
    assert node.max_voxels == 40000 and node.circle_nms_m == 0.5 and node.iou_nms == 0.1
    assert node.thresholds[0] == (0.35, 0.35, 0.35, 0.35)
    dropped = sum(int((r.detections.scores < 0.35).sum()) for r in refs)
    assert dropped > 0  # the thresholds matter on these frames
    report = replay(_frames(world, "node"), runner, weights, ReplayOptions(seeds=(0,), node=node))
    node_row = next(s for s in report.scores if s.variant.family == "node parameters")
    assert node_row.fraction == 1.0 and report.reference.fraction < 1.0, report.verdict()
    assert report.best_family == "node parameters", report.verdict()
    assert "centerpoint_common.param.yaml" in str(node_row.variant.params["files"])
