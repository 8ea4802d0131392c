"""Which float16 graphs get ONNX Runtime's NHWC convolutions on CUDA (`prefer_nhwc`): those with convs whose every
BatchNormalization reads a conv's output (the neck's ConvTranspose → BN, not folded by the exporter). On the H100
(onnxruntime-gpu 1.31.1) a float16 BatchNormalization on a [N, C, P] input under prefer_nhwc aborts the process —
TransFusion-L's first stage (pillar encoder and backbone in one graph) did, in every ort-cuda-fp16 bisect
(benchmarks/ort_cuda_nhwc_abort.py has the matrix)."""

from __future__ import annotations

import io

import onnx
import pytest
import torch

from cp_debug.backends.ort.ort_runner import OrtRunner
from cp_debug.backends.spec import BackendSpec


class _Net(torch.nn.Module):
    def __init__(self, bn: str):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3)
        self.up = torch.nn.ConvTranspose2d(4, 4, 2, stride=2)
        self.bn = {"1d": torch.nn.BatchNorm1d(4), "2d": torch.nn.BatchNorm2d(4)}.get(bn)
        self.kind = bn

    def forward(self, x):
        y = self.conv(x)
        if self.kind == "1d":
            return self.bn(y.flatten(2)).reshape(y.shape)
        return self.bn(self.up(y)) if self.kind == "2d" else y


def _graph(bn: str) -> onnx.ModelProto:
    buf = io.BytesIO()
    torch.onnx.export(_Net(bn).eval(), (torch.randn(1, 4, 8, 8),), buf, dynamo=False, opset_version=17)
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.parametrize("spec", ["ort-cuda-fp16", "ort-cuda"])
def test_nhwc_only_for_a_float16_graph_of_convs_without_batch_normalization(spec):
    from cp_debug.determinism import _ort_reads_nhwc

    convs, neck, with_bn1d = _graph(""), _graph("2d"), _graph("1d")
    for g in (neck, with_bn1d):  # neither BN is folded by the exporter (after a ConvTranspose; a BatchNorm1d)
        assert "BatchNormalization" in {n.op_type for n in g.graph.node}
    runner = OrtRunner(convs, BackendSpec.parse(spec))
    nhwc = "1" if spec.endswith("fp16") and _ort_reads_nhwc() else None
    for g in (convs, neck):
        assert dict(runner._provider_list(g))["CUDAExecutionProvider"].get("prefer_nhwc") == nhwc
    assert "prefer_nhwc" not in dict(runner._provider_list(with_bn1d))["CUDAExecutionProvider"]
