"""A mixture of experts as ONNX Runtime GenAI's builder makes it (tests/data/llm/gptoss_moe: a tiny GPT-OSS, 4
experts, top-2, `benchmarks/llm_moe.py`, answers_moe.json found without cp_debug): the FP32 file's fused `MoE`, the
INT4 file's `QMoE` read as the MoE it stands for (before: its output unmapped, 25 of 27 probes), the builder's
`moe` scope as the HF model's `mlp`, and the HF model's experts exported one by one (transformers' default
`grouped_mm` is a custom op neither ONNX exporter takes: `--torch` was exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug

LLM = Path(__file__).resolve().parents[1] / "data" / "llm"
MOE = LLM / "gptoss_moe"
ANSWERS = json.loads((LLM / "answers_moe.json").read_text())
INT4 = ANSWERS["models"]["gptoss"]["files"]["int4"]


def _run(tmp_path, *args) -> tuple[int, str, dict]:
    np.savez(tmp_path / "prompt.npz", input_ids=np.array([ANSWERS["prompt"]]))
    out = tmp_path / "report.json"
    res = cpdebug("bisect", *args, "--inputs", tmp_path / "prompt.npz", "--generate", ANSWERS["tokens"],
                  "--json", out)
    return res.returncode, " ".join((res.stdout + res.stderr).replace("│", " ").split()), json.loads(out.read_text())


def _stage(report: dict) -> dict:
    return next(iter(next(iter(report["settings"]["deployed"].values())).values()))


def test_the_builders_qmoe_maps_onto_its_fp32_files_moe(tmp_path):
    """`--onnx fp32 -b ort,ort@int4 --generate 16`: every probe mapped, each layer's MoE output onto the QMoE's; the
    flipped step as found without cp_debug (step 1, 9 → 72), no node's level cures it (the weights')."""
    code, said, report = _run(tmp_path, "--onnx", MOE / "fp32/model.onnx", "-b", f"ort,ort@{MOE / 'int4'}")
    assert code in (1, 4), said
    stage = _stage(report)
    assert not stage["unmapped"], stage["unmapped"]
    assert stage["mapped"]["/model/layers.0/moe/MoE/output_0"]["tensor"] == "/model/layers.0/moe/QMoE/output_0"
    assert f"greedy step {INT4['first_flip']}: token {INT4['torch_token']} → {INT4['file_token']}" in said
    assert not INT4["cured_by_level1_at"] and "accuracy_level=1 does not give the tokens back" in said
    _routed_otherwise(report, said, "/model/layers.0/moe/router/MatMul/output_0")
    # the weight search reads the QMoE's experts (s14: 7 quantized weights before, the two QMoEs' not matched) and
    # the unit their rounding too
    assert "(of 9 quantized weights)" in said and "MatMulNBits and QMoE experts' weights round by 0.0857" in said


def _routed_otherwise(report: dict, said: str, router: str) -> None:
    """The root is layer 0's router, the routing read as a decision (s14): tokens whose top-2 experts differ, the
    reference's margin between its 2nd and 3rd expert within the router's own error, and the router alone (its
    segment fed the reference's input) routing some of them otherwise (its 4-bit weights')."""
    assert next(iter(report["root_cause"].values()))["probe"] == router, report["root_cause"]
    routing = [d for d in next(iter(report["decisions"].values())) if d["kind"] == "routing"]
    assert len(routing) == 1, report["decisions"]
    r = routing[0]
    assert r["node"] == "/model/layers.0/moe/QMoE" and r["k"] == 2 and r["experts"] == 4 and r["bits"] == 4
    assert 1 <= r["flipped_rows"] <= r["rows"] == len(ANSWERS["prompt"]) + INT4["first_flip"]
    for t in r["tokens"]:
        assert set(t["reference"]) != set(t["candidate"]) and len(t["reference"]) == 2
    assert 0 < r["margin"] <= 2 * r["own_error"]
    # the router alone, fed the reference's input, routes some of those tokens otherwise: its rounding's doing
    assert r["alone"] and set(r["alone"]) & {t["token"] for t in r["tokens"]}, r
    assert "fed the reference's input, the router alone routes" in said
    assert "the 4-bit rounding of the router's weights moves the choice of experts" in said
    assert f"token {r['tokens'][0]['token']}: experts {r['tokens'][0]['reference']} → " in said
    # one story (`Finding.tie`): where nothing restored brings the outputs back, the halves are said beside the
    # routing, never as an error that accumulates
    cause = next(iter(report["root_cause"].values()))
    if (cause.get("intervention") or {}).get("spread") is not None:
        assert "no single layer: the decision flip at the router of QMoE '/model/layers.0/moe/QMoE' (above)" \
            in cause["hint"], cause["hint"]
    assert "the error accumulates" not in cause["hint"] and "the error accumulates" not in said, said


def test_routes_reads_the_experts_chosen_per_token():
    """Which token's top-k experts differ as sets (an order within the k is no change), and each side's margin
    between its k-th and (k+1)-th logit."""
    from cp_debug.bisect.routing import routes

    ref = np.array([[3.0, 2.0, 1.9, 0.0], [1.0, 2.0, 0.0, 0.5], [0.0, 1.0, 2.0, 3.0]], np.float32)
    got = np.array([[3.0, 1.8, 1.95, 0.0], [2.0, 1.0, 0.0, 0.5], [0.0, 1.0, 2.0, 3.0]], np.float32)
    found = routes(ref, got, 2)
    assert [(t.token, t.reference, t.candidate) for t in found] == [(0, (0, 1), (0, 2))]
    assert found[0].margin_reference == pytest.approx(0.1) and found[0].margin_candidate == pytest.approx(0.15)
    assert routes(ref, ref, 2) == [] and len(routes(ref.reshape(1, 3, 4), got, 1)) == 1


def test_the_builders_moe_scope_is_the_hf_models_mlp():
    from cp_debug.bisect.subjects.decoder_feed import builder_scope

    names = {"model.layers.0.mlp", "model.layers.0.mlp.router", "model.layers.0.mlp.experts"}
    assert builder_scope("model.layers.0.moe", 2, names) == "model.layers.0.mlp"
    assert builder_scope("model.layers.0.moe.router", 2, names) == "model.layers.0.mlp.router"
    assert builder_scope("model.layers.0.moe", 2, {"model.layers.0.block_sparse_moe"}) == \
        "model.layers.0.block_sparse_moe"  # Mixtral's word


@pytest.mark.long
def test_against_the_pytorch_model(tmp_path):
    """`--torch hf -b torch,ort@fp32 --level all`: the same tokens, within fp32, the MoE block's output and router
    mapped (19 of 19; the experts' own output and the router's top-k weights and experts live inside the fused op,
    6 counted apart); against the INT4 file the step found
    without cp_debug, the root layer 0's router: its rounding moves the top-2 experts (s14; s13: the MoE block a
    local fault)."""
    code, said, report = _run(tmp_path, "--torch", MOE / "hf", "-b", f"torch,ort@{MOE / 'int4'}")
    assert code == 4, said  # s13: a local fault at model.layers.0.mlp[0] (exit 1), its routing not read
    assert f"greedy step {INT4['first_flip']}: token {INT4['torch_token']} → {INT4['file_token']}" in said
    _routed_otherwise(report, said, "model.layers.0.mlp.router[0]")
    code, said, report = _run(tmp_path, "--torch", MOE / "hf", "-b", f"torch,ort@{MOE / 'fp32'}", "--level", "all")
    assert code == 0 and "decodes the same 16 tokens" in said, said
    stage = _stage(report)
    # the router's weights and chosen experts (both [8, 2], told apart by their types on the reference's side) and
    # the experts' own output are computed inside the fused MoE, which holds no tensor of them: said so and counted
    # apart (s28-dtype: "19 of 25", the six among the missing; main: "19 of 21"); the graph differences as before
    assert "19 of 19 probes mapped" in said and "6 more inside its fused ops (MoE)" in said, said
    assert "reported missing" not in said.split("19 of 19 probes mapped")[1].split("graph differences")[0]
    assert "graph differences: 16 nodes only in the reference" in said
    for q in ("model.layers.0.mlp.router[1]", "model.layers.0.mlp.router[2]", "model.layers.1.mlp.experts"):
        assert stage["inside_fused"][q] == f"MoE '/model/layers.{q[13]}/moe/MoE'", stage["unmapped"]
        assert stage["unmapped"][q].startswith("inside the deployed graph's fused op MoE")
    assert {"model.layers.0.mlp[0]", "model.layers.0.mlp.router[0]", "model.layers.1.mlp[0]"} <= set(stage["mapped"])


def test_the_qmoe_experts_are_read_as_onnxruntime_holds_them(tmp_path):
    """The QMoE's packed 4-bit experts and block scales dequantized ([E, N, K], the low nibble first, level 8 the
    zero) are the FP32 file's MoE weights within their 4-bit rounding (the file's unit); the weight search matches
    each QMoE to the FP32 file's experts and to the HF model's (input-major, [E, K, N]), and its float stand-in is a
    MoE ONNX Runtime loads; the unit counts the experts beside the MatMulNBits."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper
    from safetensors.numpy import load_file

    from cp_debug.bisect.subjects.weight_cures import float_arrays, matched, with_float
    from cp_debug.precision.nbits import weight_unit
    from cp_debug.precision.qmoe import (qmoe_dequantized, qmoe_nodes, qmoe_packed, qmoe_square_sums, qmoe_unread,
                                         qmoe_weights)

    int4, fp32 = onnx.load(MOE / "int4/model.onnx"), onnx.load(MOE / "fp32/model.onnx")
    floats = {i.name: numpy_helper.to_array(i) for i in fp32.graph.initializer}
    unit = weight_unit(int4)
    assert 0.07 < unit < 0.1
    inits = {i.name: i for i in int4.graph.initializer}
    for q, f in zip(qmoe_nodes(int4), [n for n in fp32.graph.node if n.op_type == "MoE"]):
        got = qmoe_dequantized(q, inits)
        assert sorted(got) == [2, 5]
        for w, ref in ((2, floats[f.input[2]]), (5, floats[f.input[4]])):
            err = np.sqrt(np.mean((got[w] - ref) ** 2) / np.mean(ref ** 2))
            assert 0.01 < err < unit, (q.name, w, err)  # a wrong nibble order or zero point is ~1
        # the unit's byte tables (no float copy) give the levels' own Σ (q − 8)² exactly
        tables = [sums for sums, _, _ in qmoe_square_sums(q, inits)]
        for sums, (_, levels, _) in zip(tables, qmoe_weights(q, inits)):
            assert np.array_equal(sums, (levels.astype(np.float64) ** 2).sum(axis=-1))
    assert qmoe_unread(int4) == []
    moe = qmoe_nodes(int4)[0]
    moe.input.extend([""] * (12 - len(moe.input)))
    moe.input[11] = moe.input[3]  # a zero point given (fc1's, input 11)
    assert qmoe_unread(int4) == [moe.name] and len(qmoe_packed(moe, inits)) == 1
    hf = [v for v in load_file(str(MOE / "hf/model.safetensors")).values() if v.ndim in (2, 3) and v.dtype.kind == "f"]
    for reference in (float_arrays(fp32), hf):
        found = matched(int4, reference)
        assert {"/model/layers.0/moe/QMoE", "/model/layers.1/moe/QMoE"} <= set(found)
    int4 = onnx.load(MOE / "int4/model.onnx")
    found = matched(int4, float_arrays(fp32))
    experts = found["/model/layers.0/moe/QMoE"]
    assert np.array_equal(experts[2], floats["model.layers.0.moe.experts.gate_up_proj.weight"])
    m = with_float(int4, {n: w for n, w in found.items() if "QMoE" in n})
    assert [n.op_type for n in m.graph.node if n.name.endswith("/QMoE")] == ["MoE", "MoE"]
    onnx.save(m, tmp_path / "f.onnx", save_as_external_data=True, location="f.data")
    ort.InferenceSession(str(tmp_path / "f.onnx"), providers=["CPUExecutionProvider"])


def test_a_qmoe_that_cures_is_said_as_its_experts_in_float():
    """A QMoE among the curing weights is said as its experts in float, not as a nodes_to_exclude entry (none was
    verified for a QMoE); the MatMulNBits beside it keep the builder's words."""
    from cp_debug.bisect.subjects.weight_cures import FLOAT, WeightCure

    moe, o_proj = "/model/layers.0/moe/QMoE", "/model/layers.0/attn/o_proj/MatMul_Q4"
    alone = WeightCure((o_proj, moe), (moe,), True, experts=(moe,), every=True).line()
    assert alone.startswith(f"{moe} alone with the reference's float weight gives its tokens back") and \
        "nodes_to_exclude=" not in alone and f"the experts of {moe} in float" in alone, alone
    both = WeightCure((o_proj, moe), (), True, ((FLOAT, o_proj), (FLOAT, moe)), experts=(moe,)).line()
    assert "--extra_options nodes_to_exclude=/model/layers.0/attn/o_proj/MatMul; the experts of " in both, both
    assert f"{o_proj}, {moe} with the reference's float weight give its tokens back together" in both, both
