"""Module ↔ ONNX tensor table from both exporters' scope information, BatchNorm folding included."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from cp_debug.probes.naming import map_modules_to_onnx
from cp_debug.probes.torch_trace import trace_module
from cp_debug.export.torch_export import export_module
from tests.bisect import planted


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_mapped_tensors_hold_the_module_values(exporter):
    net, (x,) = planted.healthy()
    res = export_module(net, (x,), ("x",), ("y",), exporter=exporter)
    assert res.exporter == exporter
    tr = trace_module(net, (x,))
    pm = map_modules_to_onnx(res.model, tr)
    # every block and every ReLU is found
    for q in ["body.0", "body.1", "body.2", "body.3", "body.0.2", "head"]:
        assert q in pm.tensors, (q, pm.unmapped)
    # folded BatchNorm: the BN carries the conv's fused output, the conv itself is not comparable
    assert "body.0.1" in pm.tensors and "body.0.0" not in pm.tensors
    # values: ORT's tensor equals the torch module output
    from cp_debug.graph.model import expose_outputs

    model = expose_outputs(res.model, list(pm.tensors.values()))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(None, {"x": x.numpy()})))
    captured = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: captured.__setitem__(n, o.detach().numpy()))
             for n, m in net.named_modules() if n in pm.tensors]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    for q, t in pm.tensors.items():
        np.testing.assert_allclose(got[t], captured[q], rtol=1e-4, atol=1e-4, err_msg=q)
