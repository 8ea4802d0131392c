"""The CUDA kernel path (`--cudnn-algo heuristic`, the deterministic default) is reproducible: ort-cuda-fp16 (HEURISTIC
conv search, prefer_nhwc), torch-cuda-fp16 and torch-cuda-tf32 (cuDNN deterministic, channels-last) give bit-identical
outputs, with the probes exposed, twice in one process and in a second process — on the demo preset's
backbone/neck/head.

Run by hand as `python tests/backends/test_conv_kernels_gpu.py OUT.npz` (what the test's second process does).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gpu
LABELS = ("ort-cuda-fp16", "torch-cuda-fp16", "torch-cuda-tf32")
PROBES = ("pts_backbone.blocks.0", "pts_neck.deblocks.0", "pts_bbox_head.shared_conv")


def _outputs() -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """Each backend's outputs and probes on one seeded BEV canvas, run twice (`LABEL/run/name`), and its settings."""
    from cp_debug.backends.factory import make_runner
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    bb = centerpoint_subject("demo").stages[1]
    pm = bb.probe_map()
    cfg_side = 256
    rs = np.random.RandomState(0)
    feed = {"spatial_features": np.maximum(rs.randn(1, bb.example_inputs[0].shape[1], cfg_side, cfg_side), 0)
            .astype(np.float32)}
    out, settings = {}, {}
    for label in LABELS:
        spec = BackendSpec.parse(label)
        if spec.is_torch:
            runner = make_runner(spec, torch_module=bb.module, input_names=bb.input_names,
                                 output_names=bb.output_names, probe_modules=PROBES)
            rename = {p: p for p in PROBES}
        else:
            rename = {pm.tensors[p]: p for p in PROBES}
            runner = make_runner(spec, onnx_model=bb.onnx(), extra_outputs=list(rename))
        with runner as r:
            for run in range(2):
                for name, value in r.infer(feed).items():
                    out[f"{label}/{run}/{rename.get(name, name)}"] = np.asarray(value)
            settings[label] = r.settings()
    return out, settings


@pytest.fixture(scope="module")
def first():
    from tests.conftest import NEEDS

    missing = [why for why in (NEEDS["cuda"](), NEEDS["onnxruntime-gpu"]()) if why]
    if missing:
        pytest.skip("needs " + "; ".join(missing))
    return _outputs()


def test_heuristic_kernel_path_is_recorded(first):
    _, settings = first
    ort_opts = settings["ort-cuda-fp16"]["provider_options"]["CUDAExecutionProvider"]
    assert ort_opts["cudnn_conv_algo_search"] == "HEURISTIC" and ort_opts["use_tf32"] == "0"
    import onnxruntime as ort

    if tuple(int(p) for p in ort.__version__.split(".")[:2]) >= (1, 20):
        assert ort_opts["prefer_nhwc"] == "1"
    for label in ("torch-cuda-fp16", "torch-cuda-tf32"):
        torch_settings = settings[label]
        assert torch_settings["memory_format"] == "channels_last" and torch_settings["cudnn_algo"] == "heuristic"


def test_bit_identical_in_one_process(first):
    out, _ = first
    keys = [k for k in out if "/0/" in k]
    assert {k.split("/")[2] for k in keys} >= set(PROBES)
    for key in keys:
        a, b = out[key], out[key.replace("/0/", "/1/")]
        assert np.isfinite(a).any(), key
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), f"{key} differs between two runs"


def test_bit_identical_across_processes(first, tmp_path):
    out, _ = first
    dump = tmp_path / "second.npz"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, __file__, str(dump)], check=True, cwd=root, env=env, timeout=600)
    with np.load(dump) as z:
        second = {k: z[k] for k in z.files}
    assert set(second) == set(out)
    for key, value in out.items():
        assert value.tobytes() == second[key].tobytes(), f"{key} differs between two processes"


if __name__ == "__main__":
    values, _ = _outputs()
    np.savez(sys.argv[1], **values)
