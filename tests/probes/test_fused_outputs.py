"""A probe whose module the deployed file computes as one fused norm's output maps onto that output (issue 116)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch

from cp_debug.export.torch_export import export_module
from cp_debug.probes.foreign import map_foreign
from cp_debug.probes.naming import map_modules_to_onnx
from cp_debug.probes.torch_trace import trace_module


class _RMSNorm(torch.nn.Module):
    """An RMSNorm written out (as transformers' are): the mean of squares, its root, the weight."""

    def __init__(self, n: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.linspace(0.5, 1.5, n))

    def forward(self, x):
        return self.weight * (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))


class _Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = _RMSNorm(8)

    def forward(self, x):
        return torch.relu(self.norm(x))


def test_a_norm_fused_under_its_parents_scope_maps_onto_the_fused_ops_output():
    """The file writes the norm as one `SimplifiedLayerNormalization` named after the block (as ONNX Runtime GenAI's
    builder names Qwen3.5's `GatedRMSNorm` after `linear_attn`): no node carries `block.norm`'s scope, and the chain
    from lin1 finds no Pow after it. Before: "not found in the deployed graph"; now the fused op's output, which ONNX
    Runtime computes to the written-out norm's values."""
    torch.manual_seed(0)
    net = torch.nn.Sequential()  # named as a model's members: lin1, block (the norm in it), lin2
    for name, member in (("lin1", torch.nn.Linear(4, 8)), ("block", _Block()), ("lin2", torch.nn.Linear(8, 3))):
        net.add_module(name, member)
    net, x = net.eval(), torch.randn(6, 4)
    res = export_module(net, (x,), ("x",), ("y",), exporter="torchscript")
    trace = trace_module(net, (x,))
    ours = map_modules_to_onnx(res.model, trace)
    assert {"lin1", "block.norm", "block", "lin2"} <= set(ours.tensors), ours.unmapped
    deployed = onnx.ModelProto()
    deployed.CopyFrom(res.model)
    weight = onnx.numpy_helper.from_array(net.block.norm.weight.detach().numpy(), "block.norm.fused_weight")
    outside = [n for n in res.model.graph.node if not n.name.startswith("/block/norm/")]
    kept = [onnx.NodeProto() for _ in outside]
    for k, n in zip(kept, outside):
        k.CopyFrom(n)  # copies: the export's own graph stays as it is
    at = next(i for i, n in enumerate(kept) if ours.tensors["block.norm"] in n.input)
    kept.insert(at, onnx.helper.make_node("SimplifiedLayerNormalization", [ours.tensors["lin1"], weight.name],
                                          [ours.tensors["block.norm"] + "_fused"], name="/block/LayerNorm",
                                          axis=-1, epsilon=1e-6))
    for n in kept[at + 1:]:
        n.input[:] = [t + "_fused" if t == ours.tensors["block.norm"] else t for t in n.input]
    del deployed.graph.node[:]
    deployed.graph.node.extend(kept)
    deployed.graph.initializer.append(weight)
    feed = {"x": x.numpy()}
    want, got = (ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
                 for m in (res.model, deployed))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)  # one computation, two forms

    found = map_foreign(deployed, res.model, ours, trace)
    pm = found.probe_map
    assert pm.tensors.get("block.norm") == ours.tensors["block.norm"] + "_fused", pm.unmapped
    assert found.how["block.norm"] == "structure" and pm.op_types["block.norm"] == "SimplifiedLayerNormalization"
    assert {q: pm.tensors.get(q) for q in ("lin1", "lin2")} == {q: ours.tensors[q] for q in ("lin1", "lin2")}
    assert not pm.inside
