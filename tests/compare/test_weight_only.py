"""A weight-only segment's own error against what its own roundings explain (compare/weight_only.py), on the
figures the corpus's files give: one matmul's rounding is ~1 unit (0.96-1.24 on the healthy files), the massive
channel's lm_head 2.6-3.3 units."""

from __future__ import annotations

import numpy as np

from cp_debug.compare import noise, weight_only
from cp_debug.compare.diff import TensorDiff
from cp_debug.compare.noise import Outcome

UNIT = 0.0867  # the builder's INT4 files' own (tests/data/llm)


def _local(units: float, precision: str = "int4w-a8", seed: int = 0):
    """A segment's output and its candidate at `units` of the unit's relative RMS error, judged locally."""
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal(4096).astype(np.float32)
    noise_ = rng.standard_normal(4096).astype(np.float32)
    test = ref + noise_ * (units * UNIT * np.sqrt(np.mean(ref ** 2)) / np.sqrt(np.mean(noise_ ** 2)))
    d = TensorDiff.from_arrays("x", ref, test)
    lj = noise.judge(d, precision, unit=UNIT)
    return d, lj, weight_only.own_judgement(lj, d, precision, UNIT)


def test_one_matmuls_rounding_is_within_its_own_budget_and_the_massive_channel_is_not():
    for units in (0.96, 1.24, 1.41):  # one rounding, the healthy files' worst, two in series
        _, lj, own = _local(units)
        assert not own.beyond and own.expected_rel_rmse == noise.WEIGHT_ONLY_OWN * UNIT
        assert own.noise_ratio > lj.noise_ratio  # 2 units, not 3
    for units in (2.6, 2.9):  # lm_head's INT8 activation block with a massive channel: within 3 units, not 2
        _, lj, own = _local(units)
        assert not lj.beyond and own.beyond and own.outcome is Outcome.DEGRADED


def test_other_precisions_keep_their_local_budget():
    d = TensorDiff.from_arrays("x", np.ones(8, np.float32), np.ones(8, np.float32) * 1.001)
    lj = noise.judge(d, "fp16")
    assert weight_only.own_judgement(lj, d, "fp16") is lj
    assert weight_only.beyond_own(lj, lj, "fp16") is lj


def test_a_probe_within_its_budget_is_degraded_by_its_own_segment_only_for_weight_only():
    d, lj, own = _local(2.8)
    j = noise.judge(d, "int4w-a8", unit=UNIT)
    assert not j.beyond
    got = weight_only.beyond_own(j, own, "int4w-a8")
    assert got.outcome is Outcome.DEGRADED and got.noise_ratio == j.noise_ratio
    _, _, fine = _local(1.0)
    assert weight_only.beyond_own(j, fine, "int4w-a8") is j


def test_a_local_fault_stands_out_from_the_runs_other_segments():
    _, _, own = _local(2.8)  # 1.4× the own budget
    assert weight_only.own_fault("int4w-a8", own, True, [0.5, 0.52, 0.48, 0.55])  # one matmul each: ~1 unit
    assert not weight_only.own_fault("int4w-a8", own, True, [0.9, 0.92, 0.95])  # every segment errs alike (OLMo)
    assert not weight_only.own_fault("int4w-a8", own, False, [0.5, 0.5, 0.5])  # holds measured layers
    assert not weight_only.own_fault("int4w-a8", own, True, [0.5])  # too few to say
    assert not weight_only.own_fault("fp16", own, True, [0.1, 0.1, 0.1])


def test_a_report_read_back_keeps_the_segments_own_budget():
    """A probe's result written to the report's JSON and read back (`cpdebug report`, compare runs, bundles) rebuilds
    its local judgement with the budget it was judged by — the segment's own roundings (2 units), not the probe's 3
    (before: the ratio kept, the budget figure the probe's)."""
    from cp_debug.bisect.result import ProbeResult

    d, lj, own = _local(2.8)  # the massive channel's lm_head
    j = noise.judge(d, "int4w-a8", unit=UNIT)
    again = ProbeResult.from_json(ProbeResult("logits", "ok", d, d, judgement=j, local_judgement=own).to_json())
    assert again.local_judgement.expected_rel_rmse == own.expected_rel_rmse == noise.WEIGHT_ONLY_OWN * UNIT
    assert again.local_judgement.beyond and abs(again.local_judgement.noise_ratio - own.noise_ratio) < 1e-12
    assert again.judgement.expected_rel_rmse == j.expected_rel_rmse != own.expected_rel_rmse
    plain = ProbeResult.from_json(ProbeResult("logits", "ok", d, d, judgement=j, local_judgement=lj).to_json())
    assert plain.local_judgement.expected_rel_rmse == lj.expected_rel_rmse  # a probe's own budget: as before


def test_a_segments_own_budget_grows_with_the_matmuls_it_holds_in_series():
    """√n + 1 units for the n weight-only matmuls a segment holds in series with no probe between (`own_units`): the
    healthy corpus files' segments at `--level block` (4 to 6 MatMulNBits in series, measured: docs/llm.md, s13) are
    within it, where the fixed 2 units called those beyond; one matmul keeps 2, and lm_head's massive channel
    (2.8-3.3 units) in a segment of 3 is still beyond (√(3.3² + 2) = 3.6 against 2.73)."""
    units_of = weight_only.own_units
    assert units_of(1) == units_of(0) == noise.WEIGHT_ONLY_OWN == 2.0 and units_of(4) == 3.0
    for units, n in ((1.58, 3), (2.74, 4), (2.99, 6)):  # the healthy files' worst segment of n matmuls in series
        d, lj, fixed = _local(units)
        own = weight_only.own_judgement(lj, d, "int4w-a8", UNIT, matmuls=n)
        assert not own.beyond and f"its {n} matmuls' in series" in own.reason
        assert own.expected_rel_rmse == (n ** 0.5 + 1) * UNIT
        assert fixed.beyond == (units > noise.WEIGHT_ONLY_OWN)
    d, lj, _ = _local(3.6)
    assert weight_only.own_judgement(lj, d, "int4w-a8", UNIT, matmuls=3).beyond


def _parallel_heads(massive: float = 40.0, branches: int = 8):
    """x [1, 8, 64] (channel 5 at `massive`, the rest ~0.25) → `branches` parallel MatMuls (row 5 zero) summed, a
    tenth of the sum added to x → lm_head [64, 256]; MatMulNBitsQuantizer's RTN INT4 (block 32), the branches at
    accuracy_level 1, lm_head at 4 (its INT8 activation block rounds the channel's 31 neighbours away). Returns the
    float file's logits, the INT4 file's and the INT4 model."""
    import logging

    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    rng = np.random.default_rng(0)
    nodes, inits, acc = [], [], None
    for i in range(branches):
        w = (rng.standard_normal((64, 64)) / 8).astype(np.float32)
        w[5] = 0
        inits.append(numpy_helper.from_array(w, f"b{i}.weight"))
        nodes.append(helper.make_node("MatMul", ["x", f"b{i}.weight"], [f"y{i}"], name=f"/branch{i}/MatMul"))
        if acc is not None:
            nodes.append(helper.make_node("Add", [acc, f"y{i}"], [f"s{i}"], name=f"/sum/Add_{i}"))
        acc = f"s{i}" if acc is not None else f"y{i}"
    lm = (rng.standard_normal((64, 256)) / 8).astype(np.float32)
    lm[5] = 0
    inits += [numpy_helper.from_array(np.array(0.1, np.float32), "gain"), numpy_helper.from_array(lm, "lm.weight")]
    nodes += [helper.make_node("Mul", [acc, "gain"], ["g"], name="/sum/Mul"),
              helper.make_node("Add", ["x", "g"], ["z"], name="/residual/Add"),
              helper.make_node("MatMul", ["z", "lm.weight"], ["logits"], name="/lm_head/MatMul")]
    graph = helper.make_graph(nodes, "heads", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8, 64])],
                              [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 8, 256])], inits)
    plain = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    q = MatMulNBitsQuantizer(onnx.load_from_string(plain.SerializeToString()), algo_config=DefaultWeightOnlyQuantConfig(
        block_size=32, bits=4, op_types_to_quantize=("MatMul",), accuracy_level=4))
    q.process()
    model = q.model.model
    for n in model.graph.node:
        if n.op_type == "MatMulNBits" and n.name.startswith("/branch"):
            next(a for a in n.attribute if a.name == "accuracy_level").i = 1
    x = (rng.standard_normal((1, 8, 64)) * 0.25).astype(np.float32)
    x[..., 5] = massive
    ref, cand = (ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
                 .run(["logits"], {"x": x})[0] for m in (plain, model))
    return ref, cand, model


def test_a_massive_channels_lm_head_among_parallel_matmuls_is_beyond_its_segments_own_roundings():
    """The roundings that add up are those in series: lm_head with a massive channel (its INT8 activation block,
    3.3 units of the file's own rounding, as the corpus's Qwen3) in one segment with 8 parallel matmuls (9
    MatMulNBits, 2 in series) passed within √9 + 1 = 4 units when every MatMulNBits counted (before s13); counted in
    series (`graph.plan.in_series`, what a segment's local error is judged by) its budget is √2 + 1 and it is beyond."""
    from cp_debug.graph.plan import cut_segment, in_series
    from cp_debug.precision.nbits import weight_unit

    ref, cand, model = _parallel_heads()
    unit = weight_unit(model)
    cut = cut_segment(model, ["logits"], {"x"})
    held = sum(model.graph.node[k].op_type == "MatMulNBits" for k in cut.nodes)
    series = in_series(model, cut, "MatMulNBits")
    assert (held, series) == (9, 2)
    d = TensorDiff.from_arrays("logits", ref, cand)
    assert 2.6 < d.rel_rmse / unit < 3.9  # 3.3 units measured (Intel Xeon)
    lj = noise.judge(d, "int4w-a8", unit=unit)
    assert not weight_only.own_judgement(lj, d, "int4w-a8", unit, matmuls=held).beyond  # the count before
    own = weight_only.own_judgement(lj, d, "int4w-a8", unit, matmuls=series)
    assert own.beyond and own.outcome is Outcome.DEGRADED and "its 2 matmuls' in series" in own.reason


def test_matmuls_in_series_on_the_builders_act_order_file():
    """The corpus's GPTQ act-order Llama (q, k and v apart): layer 1's segment at `--level block` (from layer 0's
    down_proj) holds 11 MatMulNBits, 6 in series (layer 0's q→o, then layer 1's q→o→gate→down); layer 0's key cache 3,
    one in series (q, k and v side by side)."""
    from pathlib import Path

    import onnx

    from cp_debug.graph.plan import cut_segment, in_series

    path = Path(__file__).resolve().parents[1] / "data/llm/llama/gptq_act/model.onnx"
    model = onnx.load(str(path), load_external_data=False)
    inputs = {i.name for i in model.graph.input}
    layer0 = "/model/layers.0/mlp/down_proj/MatMulNBits/output_0"
    cut = cut_segment(model, ["/model/layers.1/mlp/down_proj/MatMulNBits/output_0"], inputs | {layer0})
    held = sum(model.graph.node[k].op_type == "MatMulNBits" for k in cut.nodes)
    assert (held, in_series(model, cut, "MatMulNBits")) == (11, 6)
    cut = cut_segment(model, ["present.0.key"], inputs)
    assert in_series(model, cut, "MatMulNBits") == 1
