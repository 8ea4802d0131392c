from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import onnx
import pytest

from cp_debug.compare.diff import TensorDiff, Tolerance
from cp_debug.errors import BadInputError
from cp_debug.bugreport.writer import write_bundle
from tests.report import models
from tests.report.sample import FP16, build_report

TOL = Tolerance(atol=2e-2, rtol=2e-2, max_share=1e-3)
OPS = [("Mul", 300.0), ("Mul", 300.0)]  # x*300*300: beyond 65504 in float16 for |x| > 0.73


def _pair(scale_last=300.0):
    x = np.linspace(-1, 1, 32, dtype=np.float32).reshape(models.SHAPE)
    ops = [("Mul", 300.0), ("Mul", scale_last)]
    ref = models.run(models.chain(ops), {"x": x})
    fp16 = models.chain(ops, onnx.TensorProto.FLOAT16)
    cand = models.run(fp16, {"x": x.astype(np.float16)})
    return fp16, x, ref, cand


def _write(tmp_path, name="bug", *, scale_last=300.0, **kw):
    fp16, x, ref, cand = _pair(scale_last)
    args = dict(subgraph=fp16, inputs={"x": x}, ref_outputs=ref, cand_outputs=cand, candidate_label=FP16,
                candidate_spec="ort-cpu-fp16", report=build_report(), tolerance=TOL,
                settings={"deterministic": True, "ort": {"graph_optimization_level": "ORT_DISABLE_ALL"}},
                environment={"device": "cpu (test)"}, session_options={"graph_optimization_level": "ORT_DISABLE_ALL",
                                                                       "intra_op_num_threads": 1})
    args.update(kw)
    return write_bundle(tmp_path / name, **args)


def _repro(bundle, *args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "repro.py", *args], cwd=bundle, env=env, capture_output=True, text=True,
                          timeout=120)


def test_bundle_reproduces_the_fp16_overflow(tmp_path):
    b = _write(tmp_path)
    names = {"subgraph.onnx", "inputs.npz", "reference_outputs.npz", "candidate_outputs.npz", "inputs.json",
             "repro.py", "polygraphy_cmd.txt", "manifest.json", "README.md", "report.json"}
    assert names <= set(os.listdir(b))
    onnx.checker.check_model(onnx.load(str(b / "subgraph.onnx")))
    with np.load(b / "inputs.npz") as z:
        assert z["x"].dtype == np.float16  # cast to what the fp16 subgraph declares
    r = _repro(b)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "REPRODUCED" in r.stdout and "INF" in r.stdout and "inf" in r.stdout  # status inf: Inf, no NaN
    assert "identical" in r.stdout  # this run gives what was recorded
    assert not re.search(r"^\s*(import|from)\s+cp_debug", (b / "repro.py").read_text(), re.M)


def test_repro_trt_without_tensorrt_says_so(tmp_path):
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    r = _repro(_write(tmp_path), "--trt")
    assert r.returncode == 2 and "TensorRT is not installed" in r.stderr


def test_bundle_of_a_non_divergent_pair_exits_0(tmp_path):
    b = _write(tmp_path, scale_last=0.001)
    r = _repro(b)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "NOT REPRODUCED" in r.stdout
    assert json.loads((b / "manifest.json").read_text())["diverged"] is False


def test_repro_uses_cp_debugs_metrics(tmp_path):
    b = _write(tmp_path)
    spec = importlib.util.spec_from_file_location("repro_under_test", b / "repro.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.SETTINGS["tolerance"] == {"atol": TOL.atol, "rtol": TOL.rtol, "max_share": TOL.max_share}
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(64, 64)).astype(np.float32)
    cases = [ref + 1e-3, ref * (1 + 5e-2), np.where(rng.random(ref.shape) < 0.01, ref + 1, ref),
             np.where(rng.random(ref.shape) < 0.01, np.inf, ref), ref.astype(np.float16), np.zeros_like(ref),
             ref.reshape(32, 128)]
    for test in cases:
        ours = mod.compare(ref, test, TOL.atol, TOL.rtol, TOL.max_share)
        td = TensorDiff.from_arrays("t", ref, test, TOL)
        assert ours["status"] == td.status
        for k in ("max_abs", "max_rel", "rel_max", "rel_rmse", "snr_db", "share_beyond"):
            a, e = ours[k], getattr(td, k)
            # cp_debug's compiled kernel takes maxima in float32 (compare/kernels.py): one float32 rounding
            rtol = 1e-6 if k in ("max_abs", "max_rel", "rel_max") else 1e-9
            assert (np.isnan(a) and np.isnan(e)) or np.isclose(a, e, rtol=rtol), (k, a, e)


def test_manifest_readme_and_polygraphy_files(tmp_path):
    b = _write(tmp_path)
    m = json.loads((b / "manifest.json").read_text())
    assert m["format"] == "cp_debug.bundle/1" and m["candidate"] == FP16 and m["diverged"] is True
    assert m["libraries"]["onnxruntime"] and m["libraries"]["numpy"] and m["device"] == "cpu (test)"
    assert m["backend"]["providers"] == ["CPUExecutionProvider"]
    assert m["settings"]["deterministic"] is True
    for name, info in m["files"].items():
        assert hashlib.sha256((b / name).read_bytes()).hexdigest() == info["sha256"]
    assert set(m["files"]) == set(os.listdir(b)) - {"manifest.json"}
    readme = (b / "README.md").read_text()
    assert "python repro.py" in readme and "ort-cpu-fp16" in readme and "| `y` |" in readme
    assert "root cause" in readme
    cmd = (b / "polygraphy_cmd.txt").read_text()
    assert "polygraphy run subgraph.onnx --onnxrt" in cmd and "--load-inputs inputs.json" in cmd

    from polygraphy.json import load_json
    feeds = load_json(str(b / "inputs.json"))
    assert isinstance(feeds, list) and len(feeds) == 1 and feeds[0]["x"].dtype == np.float16


@pytest.mark.skipif(not shutil.which("polygraphy"), reason="polygraphy CLI not on PATH")
def test_polygraphy_command_runs_and_fails_on_the_divergence(tmp_path):
    b = _write(tmp_path)
    line = next(ln for ln in (b / "polygraphy_cmd.txt").read_text().splitlines() if ln.startswith("polygraphy run")
                and "--onnxrt" in ln)
    r = subprocess.run(line.split(), cwd=b, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "FAILED" in r.stdout + r.stderr


def test_tar_and_replacing_an_older_bundle(tmp_path):
    _write(tmp_path, scale_last=0.001)
    b = _write(tmp_path, make_tar=True)  # replaces the older bundle, does not merge
    assert json.loads((b / "manifest.json").read_text())["diverged"] is True
    with tarfile.open(tmp_path / "bug.tar.gz") as tar:
        assert "bug/repro.py" in tar.getnames() and "bug/subgraph.onnx" in tar.getnames()
    assert sorted(os.listdir(tmp_path)) == ["bug", "bug.tar.gz"]


def test_refuses_a_directory_holding_other_files(tmp_path):
    (tmp_path / "bug").mkdir()
    (tmp_path / "bug" / "thesis.tex").write_text("precious")
    with pytest.raises(BadInputError, match="holds other files"):
        _write(tmp_path)
    assert os.listdir(tmp_path / "bug") == ["thesis.tex"]


@pytest.mark.parametrize("where", ["parent_is_file", "proc"])
def test_unwritable_destination_is_one_line_and_leaves_nothing(tmp_path, where):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "bug" if where == "parent_is_file" else "/proc/cp_debug_bundle_test"
    fp16, x, ref, cand = _pair()
    with pytest.raises(BadInputError) as e:
        write_bundle(out, subgraph=fp16, inputs={"x": x}, ref_outputs=ref, cand_outputs=cand, candidate_label=FP16,
                     candidate_spec="ort-cpu-fp16", report=None, tolerance=TOL, settings={}, environment={})
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"cannot write bundle {out}")
    assert os.listdir(tmp_path) == ["file"]


def test_disk_full_midway_leaves_no_half_bundle(tmp_path, monkeypatch):
    import cp_debug.bugreport.writer as bundle_mod

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundle_mod, "_manifest", full)  # after every data file has been written
    with pytest.raises(BadInputError, match=r"^cannot write bundle .*bug: no space left on device$"):
        _write(tmp_path, make_tar=True)
    assert os.listdir(tmp_path) == []


def test_bad_inputs_are_named(tmp_path):
    fp16, x, ref, cand = _pair()
    common = dict(subgraph=fp16, ref_outputs=ref, cand_outputs=cand, candidate_label=FP16, candidate_spec="s",
                  report=None, tolerance=TOL, settings={}, environment={})
    with pytest.raises(BadInputError, match="no value given for subgraph input"):
        write_bundle(tmp_path / "b", inputs={}, **common)
    with pytest.raises(BadInputError, match="'?zz'? is not an input"):
        write_bundle(tmp_path / "b", inputs={"x": x, "zz": x}, **common)
    with pytest.raises(BadInputError, match="is not an output of the subgraph"):
        write_bundle(tmp_path / "b", inputs={"x": x}, **{**common, "ref_outputs": {"nope": ref["y"]}})
    assert os.listdir(tmp_path) == []
