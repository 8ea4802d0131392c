"""`cpdebug replay` as the node: a bag's cloud reaches the model as Autoware's CenterPoint and `sweep --scenes BAG`
build it (the key frame's time column 0, whatever per-point time the driver stamped), the reference runs where it
is asked to, and what the replay cannot vouch for is said (the demo preset on a recording, no densification);
`--min-match` is a gate.

Bags are real rosbag2 folders written with rosbags' writer (`data.rosbag.write_bag`) from synthetic clouds whose
points carry a per-point `time_stamp`, as a spinning lidar's driver stamps them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags.rosbag2")

from cp_debug.data.frames import from_scenes  # noqa: E402
from cp_debug.recipes import catalog  # noqa: E402
from cp_debug.data.rosbag import LIDAR_TOPIC, OBJECTS_TOPIC, Cloud, read_bag, write_bag  # noqa: E402
from cp_debug.data.scenes import heldout_seeds, make_scene  # noqa: E402
from cp_debug.lidar.boxes import Detections
from cp_debug.models.centerpoint.presets import get_preset  # noqa: E402
from tests.cli_run import cpdebug as run_cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
S = 1_000_000_000


def cpdebug(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=ROOT)


def _clouds(cfg, n: int) -> list[Cloud]:
    """n synthetic clouds of (x, y, z, intensity, time_stamp): per-point times over a 0.1 s sweep, and a few rows of
    NaN (an organised cloud's missing returns)."""
    rng = np.random.default_rng(7)
    out = []
    for i, seed in enumerate(heldout_seeds(n)):
        pts = make_scene(cfg, seed).points.astype(np.float32)
        pts[:, 4] = np.sort(rng.uniform(0.0, 0.1, len(pts))).astype(np.float32)
        pts[::997, :3] = np.nan
        out.append(Cloud((i + 1) * S + 123, "base_link", pts))
    return out


def test_a_5_channel_model_replayed_from_a_bag_sees_the_points_sweep_sees(tmp_path):
    import torch

    from cp_debug.models.centerpoint.source import load_model
    from cp_debug.replay.engine import ReferenceRunner
    from cp_debug.replay.session import replay
    from cp_debug.replay.sources import frames_from_bag

    torch.set_num_threads(1)
    cfg = get_preset("tiny").with_(name="tiny-xyzit", in_channels=5, use_dim=(0, 1, 2, 3, 4))
    clouds = _clouds(cfg, 2)
    clouds_only = write_bag(tmp_path / "clouds", clouds)
    sweep_points = [f.load(cfg).points for f in from_scenes(clouds_only, cfg)]  # what `sweep --scenes BAG` reads
    model = load_model(cfg, random_weights=True).model
    with ReferenceRunner(model, cfg, catalog.recipe().plugin("replay")) as runner:
        published = [runner.run(p).detections for p in sweep_points]  # the node's boxes: the reference's own
        bag = write_bag(tmp_path / "bag", clouds, [(c.stamp_ns, d) for c, d in zip(clouds, published)],
                        cfg.class_names)
        stored, _ = read_bag(bag, cfg.class_names, lidar_topic=LIDAR_TOPIC, objects_topic=OBJECTS_TOPIC)
        assert all(np.nanmax(c.points[:, 4]) > 0.09 for c in stored)  # the bag holds the per-point times
        source = frames_from_bag(bag, cfg, lidar_topic=LIDAR_TOPIC, objects_topic=OBJECTS_TOPIC)
        for frame, points, cloud in zip(source.frames, sweep_points, clouds):
            assert frame.points.shape == points.shape == (len(cloud.points) - len(cloud.points[::997]), 5)
            assert np.array_equal(frame.points, points)  # the same points, bit for bit
            assert not frame.points[:, 4].any()  # the key frame's time lag, 0, not the driver's stamps
        report = replay(source, runner, "random weights")
        assert report.reference.fraction == 1.0 and report.matches_reference, report.verdict()
        # the time column matters to this model: fed the bag's per-point times, its boxes move
        raw = stored[0].points[np.isfinite(stored[0].points).all(axis=1)]
        stamped = runner.run(raw).detections
        assert not (np.array_equal(stamped.boxes, published[0].boxes)
                    and np.array_equal(stamped.scores, published[0].scores))
    assert report.warnings == (report.warnings[0],) and "past-frame densification is not done" in report.warnings[0]


def _lost_one(tmp_path, cfg, model) -> tuple[Path, int]:
    """A one-frame bag whose node lost one of the reference's boxes, and the reference's box count."""
    import torch

    from cp_debug.replay.engine import ReferenceRunner

    clouds = _clouds(cfg, 1)
    points = from_scenes(write_bag(tmp_path / "clouds", clouds), cfg)[0].load(cfg).points
    torch.set_num_threads(1)
    with ReferenceRunner(model, cfg, catalog.recipe().plugin("replay")) as runner:
        ref = runner.run(points).detections
    assert len(ref) >= 4
    # The node lost the reference's best box of those with no other box of their class within the 2 m a box is
    # paired in: matched best first, a lost box with a neighbour would take that neighbour's twin from it.
    xy, labels = ref.boxes[:, :2].astype(np.float64), ref.labels
    near = (np.linalg.norm(xy[:, None] - xy[None], axis=-1) <= 2.0) & (labels[:, None] == labels[None])
    keep = np.arange(len(ref)) != np.flatnonzero(near.sum(axis=1) == 1)[0]
    lost = Detections(ref.boxes[keep], ref.scores[keep], ref.labels[keep], ref.class_names)
    return write_bag(tmp_path / "bag", clouds, [(clouds[0].stamp_ns, lost)], cfg.class_names), len(ref)


def test_min_match_gates_on_the_agreement_with_the_reference(tmp_path):
    """--min-match breaks (exit 1, one line with the figures) above the agreement and holds below it. The tiny
    preset with the demo's trained weights (on tiny's 0.64 m pillars they give boxes, near-duplicates among them;
    the gate reads the agreement, not how good the boxes are): an engine run of its 40 x 40 grid is a 64th of the
    demo's."""
    from cp_debug.models.centerpoint.source import load_model, shipped_checkpoint

    cfg = get_preset("tiny")
    checkpoint = shipped_checkpoint("demo")
    bag, n = _lost_one(tmp_path, cfg, load_model(cfg, checkpoint).model)
    args = ("replay", str(bag), "--preset", "tiny", "--checkpoint", str(checkpoint), "--shuffle-seeds", "", "-q",
            "--json", str(tmp_path / "r.json"))
    agreement = (n - 1) / n
    r = cpdebug(*args, "--min-match", f"{agreement + 0.01:.4f}")
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2, r.stderr  # the warning (no densification) and the gate, one line each
    assert lines[0].startswith("cpdebug: warning: the node's past-frame densification is not done")
    assert lines[1].startswith(f"cpdebug: gate broken: --min-match {agreement + 0.01:.4f}: the agreement of the "
                               f"deployment's boxes with the reference ({n - 1} agreeing of {n - 1} "
                               f"deployed and {n} reference boxes) is {agreement:.4f}, below the limit")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["gates"][0]["broken"] and data["gates"][0]["value"] == pytest.approx(agreement)
    r = cpdebug(*args, "--min-match", f"{agreement - 0.01:.4f}")
    assert r.returncode == 0 and "gate" not in r.stderr, r.stderr


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow  # one replay of the demo preset: three engine runs of its 320 x 320 grid (about 15 s of CPU)
def test_cli_warns_of_the_demo_preset_gates_on_min_match_and_needs_cuda_for_device_cuda(tmp_path):
    """The demo preset (no --config) warns that its boxes are not the deployment's, next to the bag's own warning
    and a broken gate: the node published no box, so the agreement is 0 (the gate's figures on a node that lost
    one box: test_min_match_gates_on_the_agreement_with_the_reference)."""
    import torch

    cfg = get_preset("demo")
    clouds = _clouds(cfg, 1)
    bag = write_bag(tmp_path / "bag", clouds, [(clouds[0].stamp_ns, Detections.empty(cfg.class_names))],
                    cfg.class_names)
    args = ("replay", str(bag), "--shuffle-seeds", "", "-q", "--json", str(tmp_path / "r.json"))
    torch.set_num_threads(1)
    r = cpdebug(*args, "--min-match", "0.5")
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3, r.stderr  # the two warnings and the gate, one line each
    assert lines[0].startswith("cpdebug: warning: the model is the built-in demo preset (weights trained on "
                               "cp_debug's synthetic scenes)")
    assert lines[1].startswith("cpdebug: warning: the node's past-frame densification is not done")
    data = json.loads((tmp_path / "r.json").read_text())
    n = data["reference"]["variant_boxes"]
    assert n > 0 and lines[2].startswith(
        f"cpdebug: gate broken: --min-match 0.5: the agreement of the deployment's boxes with the reference (0 "
        f"agreeing of 0 deployed and {n} reference boxes) is 0.0000, below the limit")
    assert data["warnings"][0].startswith("the model is the built-in demo preset") and len(data["warnings"]) == 2
    assert data["gates"][0]["broken"] and data["gates"][0]["value"] == 0
    assert data["settings"]["device"] == "cpu"
    if not torch.cuda.is_available():
        r = cpdebug(*args, "--device", "cuda")
        assert r.returncode == 3 and r.stderr.strip().splitlines() == [
            "cpdebug: error: --device cuda was asked but torch sees no CUDA device; use --device cpu"], r.stderr
    r = cpdebug(*args, "--device", "tpu")
    assert r.returncode == 2 and "--device 'tpu': choose cpu or cuda" in r.stderr
