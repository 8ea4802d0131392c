"""Which float16 graphs get ONNX Runtime's NHWC convolutions on CUDA (`prefer_nhwc`): those with convs and no
BatchNormalization. On the H100 (onnxruntime-gpu 1.31.1) a float16 BatchNormalization on a [N, C, P] input under
prefer_nhwc aborts the process — TransFusion-L's first stage (pillar encoder and backbone in one graph) did, in
every ort-cuda-fp16 bisect (benchmarks/ort_cuda_nhwc_abort.py has the matrix)."""

from __future__ import annotations

import io

import onnx
import pytest
import torch

from cp_debug.backends.ort_runner import OrtRunner
from cp_debug.backends.spec import BackendSpec


class _Net(torch.nn.Module):
    def __init__(self, bn1d: bool):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3)
        self.bn = torch.nn.BatchNorm1d(4) if bn1d else None

    def forward(self, x):
        y = self.conv(x)
        return y if self.bn is None else self.bn(y.flatten(2)).reshape(y.shape)


def _graph(bn1d: bool) -> onnx.ModelProto:
    buf = io.BytesIO()
    torch.onnx.export(_Net(bn1d).eval(), (torch.randn(1, 4, 8, 8),), buf, dynamo=False, opset_version=17)
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.parametrize("spec", ["ort-cuda-fp16", "ort-cuda"])
def test_nhwc_only_for_a_float16_graph_of_convs_without_batch_normalization(spec):
    from cp_debug.determinism import _ort_reads_nhwc

    convs, with_bn = _graph(False), _graph(True)
    assert "BatchNormalization" in {n.op_type for n in with_bn.graph.node}  # BatchNorm1d is not folded
    runner = OrtRunner(convs, BackendSpec.parse(spec))
    cuda = dict(runner._provider_list(convs))["CUDAExecutionProvider"]
    assert cuda.get("prefer_nhwc") == ("1" if spec.endswith("fp16") and _ort_reads_nhwc() else None)
    assert "prefer_nhwc" not in dict(runner._provider_list(with_bn))["CUDAExecutionProvider"]
