"""LayerNorms in FP16: both ONNX forms found, converted and run; offered to the keep-FP32 search; the hint says so."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from cp_debug.bisect.findings.hints import HintContext, hint_for
from cp_debug.bisect.cures.keep_fp32 import rank_candidates
from cp_debug.bisect.result import ProbeResult
from cp_debug.compare.diff import TensorDiff
from cp_debug.precision.fp16 import convert_to_fp16
from cp_debug.precision.layernorm import layernorm_nodes, layernorm_sites


class ChannelsLastNorm(torch.nn.Module):
    """A conv, then a LayerNorm over channels as ConvNeXt blocks do it (permute, normalise the last axis)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.norm = torch.nn.LayerNorm(16, eps=1e-6)

    def forward(self, x):
        return self.norm(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


@pytest.fixture(scope="module", params=[17, 16], ids=["opset17-fused", "opset16-decomposed"])
def exported(request):
    import onnx

    torch.manual_seed(0)
    model = ChannelsLastNorm().eval()
    x = torch.randn(1, 8, 12, 10) * 400  # |x - mean| well beyond 256: the squares pass FP16's 65504
    buf = io.BytesIO()
    torch.onnx.export(model, (x,), buf, opset_version=request.param, input_names=["x"], output_names=["y"],
                      dynamo=False)
    return request.param, onnx.load_from_string(buf.getvalue()), model, x


def test_sites_are_found_in_both_forms(exported):
    opset, model, _, _ = exported
    (site,) = layernorm_sites(model)
    ops = {n.name: n.op_type for n in model.graph.node}
    if opset == 17:
        assert site.fused and [ops[n] for n in site.nodes] == ["LayerNormalization"]
    else:
        assert not site.fused
        assert [ops[n] for n in site.nodes] == ["ReduceMean", "Sub", "Pow", "ReduceMean", "Add", "Sqrt", "Div"]
    assert site.input == next(n.output[0] for n in model.graph.node if n.op_type == "Transpose")


def test_fp16_conversion_runs_in_ort(exported):
    import onnxruntime as ort

    _, model, torch_model, x = exported
    half = convert_to_fp16(model)
    sess = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": x.numpy()})
    with torch.no_grad():
        want = torch_model(x).numpy()
    assert y.dtype == np.float32 and np.isfinite(y).all()  # ORT CPU keeps LayerNorm statistics in float32
    np.testing.assert_allclose(y, want, atol=0.05)


def test_keep_fp32_candidates_include_the_layernorm(exported):
    _, model, _, _ = exported
    names = {c.name for c in rank_candidates(model, {})}
    assert layernorm_nodes(model) <= names
    assert any(n.op_type == "Conv" and n.name in names for n in model.graph.node)


def test_hint_names_an_fp16_layernorm_overflow():
    ref = np.ones((4, 16), np.float32)
    bad = ref.copy()
    bad[0, 0] = np.nan
    diff = TensorDiff.from_arrays("pts_backbone.stages.0.0.norm", ref, bad)
    result = ProbeResult("pts_backbone.stages.0.0.norm", "nan", diff, diff)
    text = hint_for(result, HintContext(precision="fp16", layer_norm=True, ln_spread=310.0))
    assert text.startswith("FP16 LayerNorm overflow") and "|x - mean| > 256" in text and "--keep-fp32" in text
    assert "|x - mean| = 310" in text  # the number the reason rests on
    other = hint_for(result, HintContext(precision="fp16"))
    assert "LayerNorm" not in other
    # the data does not meet the condition (the reference's |x - mean| stays at 3.6): no LayerNorm reason
    small = hint_for(result, HintContext(precision="fp16", layer_norm=True, ln_spread=3.6))
    assert "LayerNorm" not in small
    unknown = hint_for(result, HintContext(precision="fp16", layer_norm=True))
    assert "LayerNorm" not in unknown
