"""`cpdebug export` and `cpdebug infer`, through cpdebug's app (its one error mapping included)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cp_debug.cli.main import app

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_export_random_weights(tmp_path):
    res = _run("export", "--preset", "tiny", "--seed", "1", "--out", tmp_path / "onnx", "-q")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "onnx" / "pts_voxel_encoder.onnx").is_file()
    assert (tmp_path / "onnx" / "pts_backbone_neck_head.onnx").is_file()
    assert "pts_backbone_neck_head.onnx" in res.stdout


def test_export_from_checkpoint_and_infer_with_ort(tmp_path, tiny_model, scene):
    from cp_debug.pickles import save_checkpoint

    ckpt = save_checkpoint(tiny_model, tmp_path / "tiny.pth")
    scene.points.tofile(tmp_path / "scan.bin")
    res = _run("export", "--preset", "tiny", "--checkpoint", ckpt, "--out", tmp_path / "onnx", "-q")
    assert res.exit_code == 0, res.output
    outs = {}
    for enc, bb in (("torch", "torch"), ("ort", "ort")):
        out = tmp_path / f"{enc}-{bb}.npz"
        res = _run("infer", "--preset", "tiny", "--checkpoint", ckpt, "--points", tmp_path / "scan.bin",
                   "--encoder", enc, "--backbone", bb, "--onnx-dir", tmp_path / "onnx", "--out", out, "-q")
        assert res.exit_code == 0, res.output
        assert "boxes" in res.stdout
        with np.load(out) as data:
            outs[enc] = {k: data[k] for k in data.files}
    a, b = outs["torch"], outs["ort"]
    assert set(a) >= {"heatmap", "reg", "height", "dim", "rot", "vel", "boxes", "scores", "labels"}
    assert a["boxes"].shape[1] == 9 and len(a["boxes"]) == len(a["scores"]) == len(a["labels"]) > 0
    assert a["heatmap"].shape == (1, 5, 20, 20)  # tiny's 40 x 40 pillars, out_size_factor 2
    for name in ("heatmap", "reg", "height", "dim", "rot", "vel"):
        assert np.abs(a[name] - b[name]).max() < 1e-3
    np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-3)
    assert not list(tmp_path.glob(".*.tmp"))


def test_infer_exports_to_a_temp_dir_when_needed(tmp_path):
    out = tmp_path / "r.npz"
    res = _run("infer", "--preset", "tiny", "--backbone", "ort", "--out", out, "-q")
    assert res.exit_code == 0, res.output
    with np.load(out) as data:
        assert data["scores"].ndim == 1
        record = json.loads(str(data["model_record"]))  # the run's model, as `cpdebug extract` reads it
    assert record == {"preset": "tiny", "config": None, "checkpoint": None, "random_weights": False, "seed": 0,
                      "int8": None}


@pytest.mark.parametrize(
    "args, code, text",
    [
        (["infer", "--preset", "nope"], 2, "unknown CenterPoint preset"),
        (["infer", "--preset", "tiny", "--encoder", "trt"], 2, "not a stage backend"),
        (["export", "--preset", "awml-760", "--checkpoint", "{ckpt}"], 2, "awml-base, demo, tiny"),
        (["infer", "--preset", "tiny", "--points", "{pts2}"], 2, "2 column"),
        (["infer", "--preset", "tiny", "--points", "{corrupt}"], 2, "fits no float32 layout"),
        (["infer", "--preset", "tiny", "--checkpoint", "{ptq}"], 2, "PTQ"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(tmp_path, tiny_model, args, code, text):
    from cp_debug.pickles import save_checkpoint
    from tests.models.centerpoint.test_cp_checkpoint import _fuse_layout

    import torch

    paths = {
        "ckpt": save_checkpoint(tiny_model, tmp_path / "tiny.pth"),
        "pts2": tmp_path / "p2.npy",
        "corrupt": tmp_path / "bad.bin",
        "ptq": tmp_path / "ptq.pth",
    }
    np.save(paths["pts2"], np.zeros((10, 2), np.float32))  # x, y only: 3+ columns are read (missing ones zero-filled)
    paths["corrupt"].write_bytes(b"\x01" * 26)
    torch.save({"state_dict": _fuse_layout(tiny_model.state_dict())}, paths["ptq"])
    res = _run(*[a.format(**paths) for a in args], "--out", tmp_path / ("x.npz" if args[0] == "infer" else "o"), "-q")
    assert res.exit_code == code, res.output
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("cpdebug: error:") and text in lines[0], res.stderr
