"""A shipped preset's bisect subject kept between processes (`recipes/centerpoint/kept_subject.py`, issue 118): a
bisect whose backends are all ONNX Runtime's reads it back and runs without importing torch, its report the one the
run that kept it wrote; the numpy scatter and decode such a run uses give torch's numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cp_debug.recipes.centerpoint.kept_subject import scatter_glue

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ("torch", "onnxruntime", "pandas", "matplotlib", "transformers")
# the command line in this process, then which heavy libraries it imported (the CLI's `main`, no server)
_RUN = """import json, sys
from cp_debug.cli.main import main
sys.argv = ["cpdebug", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit as done:
    code = done.code
print("HEAVY " + json.dumps({"code": code, "loaded": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def test_the_numpy_scatter_is_the_models():
    import torch

    from cp_debug.models.centerpoint.scatter import PointPillarsScatter

    rng = np.random.default_rng(0)
    ny, nx, channels, n = 40, 56, 8, 300
    cells = rng.choice(ny * nx, n, replace=False)
    coors = np.stack([np.zeros(n), np.zeros(n), cells // nx, cells % nx], axis=1).astype(np.int32)
    pillars = rng.standard_normal((n, 1, channels)).astype(np.float32)  # the encoder's (N, 1, C) output
    want = PointPillarsScatter(channels, (ny, nx))(torch.from_numpy(pillars.reshape(n, -1)), torch.from_numpy(coors))
    got = scatter_glue(coors, channels, ny, nx)(1, {"pillar_features": pillars})["spatial_features"]
    assert got.dtype == np.float32 and got.shape == (1, channels, ny, nx)
    assert np.array_equal(got, want.numpy())


def test_the_numpy_decode_is_torchs(tiny_cfg):
    """The same boxes, labels and cells (scores and boxes to float32's last bits: numpy's sigmoid, exp and atan2);
    a heatmap holding NaN is torch's to order."""
    from cp_debug.models.centerpoint.decode import decode, decode_numpy

    rng = np.random.default_rng(3)
    side = 64
    maps = {n: rng.standard_normal((1, c, side, side)).astype(np.float32) for n, c in tiny_cfg.head_channels().items()}
    maps["heatmap"] = maps["heatmap"] * 2 - 1
    want, got = decode(maps, tiny_cfg), decode_numpy(maps, tiny_cfg)
    assert len(want.scores) > 10
    assert np.array_equal(got.labels, want.labels) and np.array_equal(got.cells, want.cells)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)
    np.testing.assert_allclose(got.boxes, want.boxes, rtol=1e-5, atol=1e-5)
    assert got.rot_rms == pytest.approx(want.rot_rms, rel=1e-6)
    maps["heatmap"][0, 0, 3, 3] = np.nan
    nan_want, nan_got = decode(maps, tiny_cfg), decode_numpy(maps, tiny_cfg)
    assert np.array_equal(nan_got.boxes, nan_want.boxes, equal_nan=True)


def test_the_numpy_top_k_is_a_full_sorts_head():
    """The decode's top-k by partition: the same cells, in the same order, as the whole row sorted (descending,
    ties to the lower cell), with ties across the k-th value, infinities and k past the row."""
    from cp_debug.models.centerpoint.decode import _top_k

    rng = np.random.default_rng(5)
    for trial in range(200):
        n = int(rng.integers(1, 2000))
        row = (rng.integers(-4, 4, n) if trial % 2 else rng.standard_normal(n)).astype(np.float32)
        row[rng.integers(0, n, 2)] = np.inf if trial % 3 == 0 else -0.0
        k = int(rng.integers(1, n + 3))
        assert np.array_equal(_top_k(row, k), np.argsort(-row, kind="stable")[:k]), (trial, n, k)


def _bisect(cache: Path, out: Path) -> dict:
    env = {**os.environ, "CPDEBUG_SERVER": "off", "CPDEBUG_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    env.pop("CPDEBUG_NO_CACHE", None)
    argv = ["bisect", "--preset", "tiny", "--level", "all", "-b", "ort,ort-cpu-fp16", "--quiet", "--json", str(out)]
    done = subprocess.run([sys.executable, "-c", _RUN, json.dumps(argv)], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    line = next((x for x in done.stdout.splitlines() if x.startswith("HEAVY ")), None)
    assert line is not None, done.stderr[-2000:]
    return json.loads(line[len("HEAVY "):])


def _less_walls(path: Path) -> dict:
    doc = json.loads(path.read_text())
    doc.pop("wall_s", None)
    for key in ("peak_memory", "phases"):
        doc["settings"].pop(key, None)
    for key in ("budget_mb", "device_budget_mb"):
        doc["settings"].get("reference_store", {}).pop(key, None)
    return doc


@pytest.mark.long
def test_an_onnx_runtime_bisect_of_a_kept_preset_imports_no_torch(tmp_path):
    """A run builds the preset in torch and keeps its subject; the next, in a fresh process, reads it back: no torch
    imported to the end (the report, the detection verdict), and the report of a warm run that built it in torch."""
    cache = tmp_path / "cache"
    cold = _bisect(cache, tmp_path / "cold.json")  # exports and traces stored: its report says so
    assert cold["code"] in (0, 1, 4) and "torch" in cold["loaded"]
    kept = list((cache / "subjects").glob("*.pkl"))
    assert len(kept) == 1
    kept[0].unlink()
    built = _bisect(cache, tmp_path / "built.json")  # warm caches, the subject built in torch (and kept again)
    assert "torch" in built["loaded"] and len(list((cache / "subjects").glob("*.pkl"))) == 1
    read = _bisect(cache, tmp_path / "read.json")
    assert read["code"] == built["code"] == cold["code"]
    assert "torch" not in read["loaded"] and "onnxruntime" in read["loaded"]
    assert _less_walls(tmp_path / "read.json") == _less_walls(tmp_path / "built.json")
