"""lint/weights.py: a deployed file's weights against the module's, in the forms an exporter writes them."""

from __future__ import annotations

import io

import onnx
import torch

from cp_debug.lint.weights import check_weights


class _Attention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn = torch.nn.MultiheadAttention(16, 2)
        self.cross_attn = torch.nn.MultiheadAttention(16, 2)
        self.ffn = torch.nn.Linear(16, 16)

    def forward(self, x):
        y = self.self_attn(x, x, x)[0]
        return self.ffn(self.cross_attn(y, x, x)[0])


def _exported(module) -> onnx.ModelProto:
    buf = io.BytesIO()
    torch.onnx.export(module.eval(), (torch.randn(5, 1, 16),), buf, dynamo=False, opset_version=17)
    return onnx.load_from_string(buf.getvalue())


def test_attention_s_packed_in_proj_is_held_in_its_three_parts_and_other_weights_differ():
    """The exporter writes nn.MultiheadAttention's in_proj_weight [3E, E] as one [E, 3E] MatMul weight where query,
    key and value are one tensor (self-attention), as [E, E] and [E, 2E] ones (q; k and v) where only key and value
    are: each is one of the module's forms, so a file of the module's own weights has none differing (TransFusion-L's
    deployed file reported its decoder's attention in_proj as differing weights before), a file of other weights
    all."""
    torch.manual_seed(0)
    module = _Attention()
    model = _exported(module)
    own = check_weights(module, model, "attention.onnx")
    shapes = sorted(tuple(i.dims) for i in model.graph.initializer if len(i.dims) == 2)
    # q, k, v packed; k, v packed; q, the two out_proj and the ffn
    assert (shapes.count((16, 48)), shapes.count((16, 32)), shapes.count((16, 16))) == (1, 1, 4)
    assert own.compared == len(shapes) and own.differ == 0, own.line()
    other = check_weights(_Attention(), model, "attention.onnx")
    assert other.differ == other.compared == own.compared, other.line()
