"""A probe the deployed file computes only inside a fused op: said as inside it and counted apart (issue 116)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch

from cp_debug.export.torch_export import export_module
from cp_debug.probes.foreign import map_foreign
from cp_debug.probes.naming import map_modules_to_onnx
from cp_debug.probes.torch_trace import trace_module


class _Exp(torch.nn.Module):
    def forward(self, x):
        return x.exp()


class _Softmax(torch.nn.Module):
    """A softmax written out, its exponentials a module of their own (a probe the fused Softmax holds inside)."""

    def __init__(self):
        super().__init__()
        self.exp = _Exp()

    def forward(self, x):
        e = self.exp(x - x.amax(-1, keepdim=True))
        return e / e.sum(-1, keepdim=True)


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin1, self.soft, self.lin2 = torch.nn.Linear(8, 4), _Softmax(), torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.lin2(self.soft(self.lin1(x)))


def _fused(model: onnx.ModelProto, into: str, out: str) -> onnx.ModelProto:
    """`model` with the nodes of scope /soft/ replaced by one Softmax from `into` to `out`, as a deployment fuses it."""
    fused = onnx.ModelProto()
    fused.CopyFrom(model)
    kept = [n for n in model.graph.node if not n.name.startswith("/soft/")]
    at = next(i for i, n in enumerate(kept) if out in n.input)
    kept.insert(at, onnx.helper.make_node("Softmax", [into], [out], name="/soft/Softmax", axis=-1))
    del fused.graph.node[:]
    fused.graph.node.extend(kept)
    onnx.checker.check_model(fused)
    return fused


def test_a_probe_inside_a_fused_softmax_is_said_inside_it_not_missing():
    """The file fuses the written-out softmax into one `Softmax` (ONNX Runtime runs both to the same outputs): its
    exponentials (`soft.exp`) have no tensor in it. Before: "not found in the deployed graph", counted among the
    missing; now said inside the fused op (`ProbeMap.inside`), the probes around it mapped as before."""
    torch.manual_seed(0)
    net, x = _Net().eval(), torch.randn(6, 8)
    res = export_module(net, (x,), ("x",), ("y",), exporter="torchscript")
    trace = trace_module(net, (x,))
    ours = map_modules_to_onnx(res.model, trace)
    assert {"lin1", "soft.exp", "soft", "lin2"} <= set(ours.tensors), ours.unmapped
    deployed = _fused(res.model, ours.tensors["lin1"], ours.tensors["soft"])
    feed = {"x": x.numpy()}
    want, got = (ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
                 for m in (res.model, deployed))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)  # one computation, two forms

    pm = map_foreign(deployed, res.model, ours, trace).probe_map
    assert {q: pm.tensors.get(q) for q in ("lin1", "soft", "lin2")} == \
        {q: ours.tensors[q] for q in ("lin1", "soft", "lin2")}, pm.unmapped
    assert "soft.exp" not in pm.tensors
    assert pm.inside == {"soft.exp": "Softmax '/soft/Softmax'"}
    assert pm.unmapped["soft.exp"].startswith("inside the deployed graph's fused op Softmax '/soft/Softmax'")


def test_a_probe_the_file_lacks_outside_any_fused_op_stays_missing():
    """The same file with the exponentials' module cut out and no fused op in its place (the softmax's output read
    from lin1's directly: another computation): the probe is not found, and nothing calls it inside an op."""
    torch.manual_seed(0)
    net, x = _Net().eval(), torch.randn(6, 8)
    res = export_module(net, (x,), ("x",), ("y",), exporter="torchscript")
    trace = trace_module(net, (x,))
    ours = map_modules_to_onnx(res.model, trace)
    deployed = _fused(res.model, ours.tensors["lin1"], ours.tensors["soft"])
    softmax = next(n for n in deployed.graph.node if n.op_type == "Softmax")
    softmax.op_type = "Relu"  # not a fused form of the module's ops
    del softmax.attribute[:]
    ort.InferenceSession(deployed.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})
    pm = map_foreign(deployed, res.model, ours, trace).probe_map
    assert "soft.exp" not in pm.tensors and not pm.inside
    assert pm.unmapped["soft.exp"].startswith("not found in the deployed graph"), pm.unmapped
