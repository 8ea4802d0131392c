"""TransFusion-L training on CPU: the Hungarian matching and box encoding, a short run whose loss falls, and the CLI's
float16 checkpoint loading back under AWML's state_dict keys, into `cpdebug infer --recipe transfusion`."""

from __future__ import annotations

import numpy as np
import torch
from typer.testing import CliRunner

from cp_debug.cli.main import app
from cp_debug.pickles import read_checkpoint
from cp_debug.models.transfusion.bbox_coder import TransFusionBBoxCoder
from cp_debug.models.transfusion.model import build_model
from cp_debug.models.transfusion.presets import get_preset
from cp_debug.train.batches import SceneDataset
from cp_debug.recipes.catalog import detector
from cp_debug.train.loop import TrainOptions, train
from cp_debug.recipes.transfusion.train import TransFusionLossConfig, hungarian_assign

TINY = get_preset("transfusion-tiny")
# tiny's modules on a 12.8 m half-range (64 x 64 pillars, 16 x 16 head): the same network, a quarter of the work
SMALL = TINY.with_(point_cloud_range=(-12.8, -12.8, -3.0, 12.8, 12.8, 7.0), max_voxels=4000)


def test_encode_inverts_the_coders_decode():
    coder = TransFusionBBoxCoder.from_config(TINY)
    boxes = torch.tensor([[3.0, -4.0, -1.5, 4.2, 1.9, 1.6, 0.7, 1.0, -0.5],
                          [-10.0, 8.0, -1.0, 0.8, 0.6, 1.7, -2.5, 0.0, 0.3]])
    t = coder.encode(boxes).T[None]  # (1, 10, K) as the heads give them
    (out,) = coder.decode(torch.zeros(1, 5, 2), t[:, 6:8], t[:, 3:6], t[:, 0:2], t[:, 2:3], t[:, 8:10])
    assert torch.allclose(out["bboxes"], boxes, atol=1e-5)


def test_hungarian_matching_pairs_each_gt_with_its_query():
    logits = torch.full((4, 5), -4.0)
    logits[1, 0] = logits[3, 2] = 3.0  # query 1 says car, query 3 says bus
    xy = torch.tensor([[20.0, 20.0], [1.0, 1.0], [-20.0, 5.0], [-5.0, -5.0]])
    gt = torch.tensor([[-5.2, -4.9, 0, 10, 3, 3, 0, 0, 0], [1.1, 0.8, 0, 4, 2, 1.5, 0, 0, 0]])
    rows, cols = hungarian_assign(logits, xy, gt, torch.tensor([2, 0]), TINY.point_cloud_range,
                                  TransFusionLossConfig())
    assert dict(zip(rows.tolist(), cols.tolist())) == {3: 0, 1: 1}
    rows, cols = hungarian_assign(logits, xy, gt[:0], torch.tensor([], dtype=torch.long), TINY.point_cloud_range,
                                  TransFusionLossConfig())
    assert len(rows) == len(cols) == 0


def test_short_training_lowers_every_loss():
    data = SceneDataset(SMALL, seeds=[1, 2])
    result = train(SMALL, data, TrainOptions(steps=6, batch_size=2, lr=1e-3, log_every=1),
                   detector=detector("transfusion"))
    rows = [r.to_json() for r in result.log]
    assert [sorted(r) for r in rows[:1]] == [sorted(["step", "loss", "loss_heatmap", "loss_cls", "loss_bbox", "lr",
                                                     "elapsed_s"])]
    losses = [r["loss"] for r in rows]
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < 0.5 * np.mean(losses[:2])
    assert rows[-1]["loss_cls"] < rows[0]["loss_cls"]
    assert not result.model.training


def test_cli_trains_a_checkpoint_that_infer_loads(tmp_path):
    ckpt = tmp_path / "tf.pth"
    res = CliRunner().invoke(app, ["train", "--recipe", "transfusion", "--preset", "transfusion-tiny", "--n",
                                   "1", "--steps", "1", "--batch-size", "1", "--val-n", "1", "--half", "--out",
                                   str(ckpt), "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    raw = read_checkpoint(ckpt)
    assert raw["meta"]["preset"] == "transfusion-tiny" and raw["meta"]["stored_dtype"] == "float16"
    assert list(raw["state_dict"]) == list(build_model(TINY, 0).state_dict())  # AWML's keys, in its order
    assert raw["state_dict"]["pts_bbox_head.shared_conv.weight"].dtype == torch.float16
    out = tmp_path / "infer.npz"
    res = CliRunner().invoke(app, ["infer", "--recipe", "transfusion", "--preset", "transfusion-tiny",
                                   "--checkpoint", str(ckpt), "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert f"from checkpoint {ckpt}" in res.output.replace("\n", "")
    assert np.load(out)["heatmap"].shape == (1, TINY.num_classes, TINY.num_proposals)
