"""TransFusion-L on the GPU: ONNX Runtime's CUDA EP in FP16 against torch on CUDA. Until 2026-11-25 every such bisect
aborted the process (`terminate called without an active exception`): the first stage holds the pillar encoder's
float16 BatchNorm1d, which ONNX Runtime 1.31 cannot run under prefer_nhwc (tests/backends/test_ort_nhwc.py)."""

from __future__ import annotations

import json

import pytest

from tests.cli_run import cpdebug

pytestmark = [pytest.mark.gpu, pytest.mark.needs("cuda", "onnxruntime-gpu")]


def test_ort_cuda_fp16_runs_the_tiny_preset_within_precision(tmp_path):
    out = tmp_path / "r.json"
    res = cpdebug("bisect", "--recipe", "transfusion", "--preset", "transfusion-tiny", "--random-weights",
                  "--backends", "torch-cuda,ort-cuda-fp16", "--json", out)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["outcomes"]["ort-cuda-fp16"] == "within_precision"
    stages = doc["settings"]["backends"]["ort-cuda-fp16"]
    cuda = stages["pts_bev"]["provider_options"]["CUDAExecutionProvider"]
    assert "prefer_nhwc" not in cuda  # the first stage holds a BatchNormalization
