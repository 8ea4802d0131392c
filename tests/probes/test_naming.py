"""Module ↔ ONNX tensor table from both exporters' scope information, BatchNorm folding included."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from cp_debug.probes.naming import map_modules_to_onnx
from cp_debug.recipes.centerpoint.subject import centerpoint_subject
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
    _assert_values_match(res.model, net, (x,), {"x": x.numpy()}, pm.tensors, tol=1e-4)


def _assert_values_match(model, net, inputs: tuple, feed: dict, tensors: dict[str, str], tol: float) -> None:
    """ORT's value of every mapped tensor equals its torch module's output on the same input (copied when the hook
    sees it: an in-place ReLU after a BN would change the BN's)."""
    from cp_debug.graph.model import expose_outputs

    exposed = expose_outputs(model, list(tensors.values()))
    sess = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(None, feed)))
    captured = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: captured.__setitem__(n, o.detach().numpy().copy()))
             for n, m in net.named_modules() if n in tensors]
    with torch.no_grad():
        net(*inputs)
    for h in hooks:
        h.remove()
    for q, t in tensors.items():
        scale = float(np.abs(captured[q]).max())
        np.testing.assert_allclose(got[t], captured[q], rtol=tol, atol=tol * max(scale, 1.0), err_msg=q)


@pytest.fixture(scope="module")
def convnext_backbone():
    """convnextpc-demo's backbone/neck/head stage as bisect exports and traces it (a 128-cell square example)."""
    return centerpoint_subject("convnextpc-demo").stages[1]


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_a_transpose_moved_across_a_module_boundary_leaves_it_unmapped(convnext_backbone):
    """LayerNorm2d permutes NCHW → NHWC, normalises, permutes back; the exporter cancels the permute back against
    the next Linear's permute, so the LayerNormalization output is NHWC. At the square example stage 1's 64
    channels equal its 64-cell side: only the shapes at a non-square size tell the layouts apart."""
    st = convnext_backbone
    norm = "pts_backbone.stages.1.0.norm"
    assert st.trace().shapes[norm] == (1, 64, 64, 64)
    pm = st.probe_map()
    for q in (norm, "pts_backbone.stages.1.1.norm"):
        assert q not in pm.tensors, q
        assert "another axis order" in pm.unmapped[q], pm.unmapped[q]
    # LN2d whose opening permute was cancelled against the previous module's (its input comes in NHWC): its
    # permute back is inside its scope, the tensor leaving it is NCHW, and it stays mapped
    assert pm.tensors["pts_backbone.downsample_layers.3.0"].endswith("Transpose_output_0")
    (x,) = st.example_inputs
    _assert_values_match(st.onnx(), st.module, (x,), {st.input_names[0]: x.numpy()}, pm.tensors, tol=1e-3)


def test_a_deployed_file_gets_the_same_axis_order_check(convnext_backbone, tmp_path):
    """A user's own file (SPEC@DIR) is mapped by its scopes with the file's shapes at the non-square size: the
    LayerNorm2d whose output the file holds in NHWC is left unmapped there too, not reported as a shape mismatch
    (before, `cpdebug bisect --preset convnextpc-demo --backends torch,ort-cpu-fp16@DIR --level all` exited 1)."""
    import onnx

    from cp_debug.graph.model import load_onnx
    from cp_debug.probes.foreign import map_foreign
    from cp_debug.probes.sized_shapes import sized_shapes

    st = convnext_backbone
    path = tmp_path / "pts_backbone_neck_head.onnx"
    onnx.save(st.onnx(), str(path))  # the file as a deployment folder holds it, read back
    deployed = load_onnx(path)
    sized = sized_shapes(deployed, st.module, st.example_inputs, st.input_names)
    assert sized is not None
    found = map_foreign(deployed, st.onnx(), st.probe_map(), st.trace(), st.name, st.foreign_names, sized=sized)
    pm = found.probe_map
    assert "pts_backbone.stages.1.0.norm" not in pm.tensors
    assert "another axis order" in pm.unmapped["pts_backbone.stages.1.0.norm"]
    down = "pts_backbone.downsample_layers.3.0"
    assert pm.tensors[down] == st.probe_map().tensors[down]
    # without the sized shapes the scopes alone map it to the NHWC tensor (what the check is for)
    plain = map_foreign(deployed, st.onnx(), st.probe_map(), st.trace(), st.name, st.foreign_names)
    assert plain.probe_map.tensors.get("pts_backbone.stages.1.0.norm", "").endswith("LayerNormalization_output_0")


class _Decoder(torch.nn.Module):
    """g2p_en's shape in small: a GRU encoder whose sequence output nothing reads, and a GRUCell called 4 times,
    each call's state the next call's input (unrolled decoding)."""

    def __init__(self):
        super().__init__()
        self.enc = torch.nn.GRU(8, 16, batch_first=True)
        self.dec = torch.nn.GRUCell(16, 16)

    def forward(self, x):
        _, h = self.enc(x)
        h, outs = h[0], []
        for _ in range(4):
            h = self.dec(h, h)
            outs.append(h)
        return torch.stack(outs, 1)


def test_chained_calls_of_one_module_are_told_apart():
    """The dynamo exporter scopes every call of the cell alike; the calls touch each other (the state), so connected
    groups cannot tell them apart: the data flow's cuts do, and each call's probe holds that call's value. The
    encoder's sequence output, which the model never reads, is said as such."""
    torch.manual_seed(0)
    net, x = _Decoder().eval(), torch.randn(2, 7, 8)
    res = export_module(net, (x,), ("x",), ("y",), exporter="dynamo")
    pm = map_modules_to_onnx(res.model, trace_module(net, (x,)))
    calls = [f"dec#{k}" for k in range(1, 5)]
    assert all(c in pm.tensors for c in calls), pm.unmapped
    assert len({pm.tensors[c] for c in calls}) == 4
    assert "never reads this output" in pm.unmapped["enc[0]"], pm.unmapped
    from cp_debug.graph.model import expose_outputs

    exposed = expose_outputs(res.model, [pm.tensors[c] for c in calls])
    sess = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x.numpy()})))
    with torch.no_grad():
        want = net(x).numpy()
    for k, c in enumerate(calls):
        np.testing.assert_allclose(got[pm.tensors[c]], want[:, k], rtol=1e-4, atol=1e-5, err_msg=c)


class _TwoLayerLstm(torch.nn.Module):
    """BeatNet's BDA as deployed: a 2-layer LSTM whose states (h_n, c_n) the model drops."""

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(6, 5, num_layers=2, batch_first=True)
        self.out = torch.nn.Linear(5, 3)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.out(y)


def test_an_lstm_state_the_model_drops_is_said_never_read():
    """BeatNet (tried as a new user): through `--torch`, its LSTM's `h_n` / `c_n` were "missing: no tensor leaving the
    module's ONNX scope has its output shape [2, 1, 150]" — the dynamo export writes no state output where nothing
    reads it. Said as what it is now: the model never reads it."""
    torch.manual_seed(0)
    net, x = _TwoLayerLstm().eval(), torch.randn(1, 9, 6)
    res = export_module(net, (x,), ("x",), ("y",), exporter="dynamo")
    pm = map_modules_to_onnx(res.model, trace_module(net, (x,)))
    assert "lstm[0]" in pm.tensors, pm.unmapped
    for state in ("lstm[1][0]", "lstm[1][1]"):
        assert "never reads this output" in pm.unmapped[state], pm.unmapped
        assert "write no state output" in pm.unmapped[state], pm.unmapped


class _SharedBlock(torch.nn.Module):
    """ALBERT's shape: one block (its weights shared) run 4 times over the hidden state, heads split by a reshape of
    the input's own shape; the model's output (the heads) is read inside the 3rd call, so the 4th is dead and the 3rd
    half there."""

    def __init__(self):
        super().__init__()
        self.block = _Block()

    def forward(self, x):
        h = x
        for k in range(4):
            h, heads = self.block(h)
            if k == 2:
                out = heads
        return out


class _Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.norm = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8), torch.nn.LayerNorm(8)

    def forward(self, h):
        heads = self.a(h).reshape(h.shape[0], h.shape[1], 2, 4).softmax(-1)
        return 0.5 * self.norm(h + self.b(torch.nn.functional.gelu(heads.reshape(h.shape)))), heads


def test_calls_of_a_shared_block_some_of_which_the_exporter_cut_away():
    """The dynamo exporter writes each call's weight `Transpose` in the block's scope and the heads' reshape target
    once (the first call's), and drops what no output reads: the 4th call, most of the 3rd. The block's calls are
    told apart where the graph holds them whole (each probe its call's value), the others said, never matched to
    another call's tensor."""
    torch.manual_seed(0)
    net, x = _SharedBlock().eval(), torch.randn(2, 5, 8)
    res = export_module(net, (x,), ("x",), ("y",), exporter="dynamo")
    pm = map_modules_to_onnx(res.model, trace_module(net, (x,)))
    assert "only partly in the ONNX graph" in pm.unmapped["block#3[0]"], pm.unmapped
    assert "not in the ONNX graph" in pm.unmapped["block#4[0]"], pm.unmapped
    from cp_debug.graph.model import expose_outputs

    calls = ["block#1[0]", "block#2[0]"]
    assert all(c in pm.tensors for c in calls), pm.unmapped
    exposed = expose_outputs(res.model, [pm.tensors[c] for c in calls])
    sess = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x.numpy()})))
    with torch.no_grad():
        h1, _ = net.block(x)
        h2, _ = net.block(h1)
    for c, want in zip(calls, (h1, h2)):
        np.testing.assert_allclose(got[pm.tensors[c]], want.numpy(), rtol=1e-4, atol=1e-5, err_msg=c)


class _Pair(torch.nn.Module):
    """A block returning (its norm's output, a second tensor of the same shape): the first member is the norm's probe,
    handed up; the second nothing outside reads."""

    def __init__(self):
        super().__init__()
        self.norm = torch.nn.LayerNorm(8)

    def forward(self, x):
        return self.norm(x), x.tanh()


class _ReadsFirst(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.block = _Pair()

    def forward(self, x):
        y, _ = self.block(x)
        return y + 1


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_tuple_member_is_not_the_tensor_of_the_member_a_child_handed_up(exporter):
    """`block[1]` (the tanh, which nothing reads) has the shape of `block[0]`, the norm's output handed up as its
    probe: the one tensor leaving the block is the norm's, and `block[1]` was matched to it ("the last one that
    fits"), comparing the norm's values as the tanh's. Now the trace keeps what a call handed up and the member is
    said unread, never given the norm's tensor."""
    torch.manual_seed(0)
    net, x = _ReadsFirst().eval(), torch.randn(2, 5, 8)
    res = export_module(net, (x,), ("x",), ("y",), exporter=exporter)
    trace = trace_module(net, (x,))
    assert trace.handed_up == {"block": ("block.norm",)}
    pm = map_modules_to_onnx(res.model, trace)
    assert "block.norm" in pm.tensors, pm.unmapped
    assert "block[1]" not in pm.tensors and "block[1]" in pm.unmapped, pm.tensors


class _Router(torch.nn.Module):
    """LFM2-MoE's router in small: (logits, the chosen experts' weights, the chosen experts), the last two both
    [tokens, 2], one float and one int64."""

    def __init__(self):
        super().__init__()
        self.score = torch.nn.Linear(8, 4, bias=False)

    def forward(self, x):
        logits = self.score(x)
        ids = torch.topk(logits.sigmoid(), 2, dim=-1).indices
        weights = logits.sigmoid().gather(-1, ids)
        return logits, weights / weights.sum(-1, keepdim=True), ids


class _Routed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gate, self.experts = _Router(), torch.nn.Linear(8, 4)

    def forward(self, x):
        _, weights, ids = self.gate(x)
        return (self.experts(x).gather(-1, ids) * weights).sum(-1)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_same_shape_members_of_other_element_types_are_told_apart(exporter):
    """The router's weights (float) and chosen experts (int64) are both [6, 2]: matched by shape only, neither was
    mapped ("2 tensors leaving the module's ONNX scope have its shape"). The trace records each probe's element type
    and each member maps to its own tensor, holding its own values."""
    torch.manual_seed(0)
    net, x = _Routed().eval(), torch.randn(6, 8)
    res = export_module(net, (x,), ("x",), ("y",), exporter=exporter)
    trace = trace_module(net, (x,))
    assert (trace.dtypes["gate[1]"], trace.dtypes["gate[2]"]) == ("float32", "int64")
    assert type(trace).from_json(trace.to_json()) == trace
    pm = map_modules_to_onnx(res.model, trace)
    assert {"gate[1]", "gate[2]"} <= set(pm.tensors), pm.unmapped
    assert pm.typed == {"gate[1]", "gate[2]"}  # told apart by type alone: no graph difference's segment end unless
    assert pm.segment_ends({"gate[1]"}).tensors.keys() == set(pm.tensors) - {"gate[2]"}  # the other graph has it
    from cp_debug.graph.model import expose_outputs

    exposed = expose_outputs(res.model, [pm.tensors["gate[1]"], pm.tensors["gate[2]"]])
    sess = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x.numpy()})))
    with torch.no_grad():
        _, weights, ids = net.gate(x)
    np.testing.assert_allclose(got[pm.tensors["gate[1]"]], weights.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[pm.tensors["gate[2]"]], ids.numpy())
