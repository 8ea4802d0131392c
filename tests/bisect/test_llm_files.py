"""LLM files made by the real tools (tests/data/llm: ONNX Runtime GenAI's model builder, ORT's MatMulNBitsQuantizer;
README there): they load, their decoder inputs are made, and the generated token that flips is found with the node
and the setting that cure it — the right answers found without cp_debug (answers.json, benchmarks/llm_files.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cp_debug.bisect.subjects.decoder_feed import DecoderInputs, decoder_feed
from cp_debug.bisect.subjects.greedy import first_flip, greedy, level4_nodes, level_cures
from cp_debug.errors import BadInputError
from cp_debug.graph.model import load_onnx
from tests.cli_run import cpdebug

LLM = Path(__file__).resolve().parents[1] / "data" / "llm"
ANSWERS = json.loads((LLM / "answers.json").read_text())
PROMPT = np.array([ANSWERS["prompt"]])
N = ANSWERS["tokens"]


def _file(rel: str):
    path = LLM / rel / "model.onnx"
    model = load_onnx(path)
    return model, DecoderInputs.of(model, path)


@pytest.mark.parametrize("rel", ["llama/fp32", "llama/int4", "qwen3_massive/int4", "qwen3_massive/rtn_int4_level4"])
def test_the_tools_files_load(rel):
    """The builder's SimplifiedLayerNormalization (ORT's, in the ONNX domain) and the quantizer's com.microsoft nodes
    without their opset import: refused by onnx.checker, run by ONNX Runtime — loaded."""
    model, dec = _file(rel)
    assert dec is not None and dec.vocab == 256
    assert any(n.op_type in ("MatMulNBits", "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization")
               for n in model.graph.node)


def test_another_fault_is_still_refused(tmp_path):
    """Reading the builder's operators as ORT's hides no other fault: a node fed a tensor nobody makes is refused."""
    import onnx

    model = onnx.load(str(LLM / "llama/fp32/model.onnx"))
    bad = next(n for n in model.graph.node if n.op_type == "MatMul")
    bad.input[0] = "nowhere"
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    with pytest.raises(BadInputError, match="not valid"):
        load_onnx(path)


def test_the_decoder_feed_of_a_builder_file():
    """input_ids given; the mask over the prompt and the empty cache (head size from genai_config.json) made."""
    _, dec = _file("qwen3_massive/int4")
    feed = decoder_feed(dec, {"input_ids": PROMPT})
    assert feed["attention_mask"].shape == (1, 8) and feed["attention_mask"].all()
    assert feed["past_key_values.0.key"].shape == (1, 2, 0, 16)
    assert set(feed) == set(dec.names)


def test_healthy_int4_files_keep_their_tokens():
    """The healthy Llama: the builder's INT4 (level 4) and the RTN file decode the reference's 32 tokens."""
    ref = greedy(*_file("llama/fp32"), PROMPT, N)
    assert list(ref.tokens) == ANSWERS["models"]["llama"]["torch_tokens"]
    assert first_flip(ref, greedy(*_file("llama/int4"), PROMPT, N)) is None


def test_the_flipped_token_and_its_cure():
    """The massive-activation Qwen3: the builder's INT4 flips a greedy token (answers.json: step 7, 23 → 225);
    lm_head's MatMulNBits at level 1 alone gives the tokens back, and the builder's level-1 file keeps them."""
    want = ANSWERS["models"]["qwen3_massive"]["files"]["int4"]
    ref = greedy(*_file("qwen3_massive/fp32"), PROMPT, N)
    model, dec = _file("qwen3_massive/int4")
    flip = first_flip(ref, greedy(model, dec, PROMPT, N))
    assert flip is not None and flip.step == want["first_flip"]
    assert (flip.ref_token, flip.cand_token) == (want["torch_token"], want["file_token"])
    assert flip.ref_margin == pytest.approx(want["torch_margin"], rel=0.05)
    cure = level_cures(model, dec, PROMPT, ref)
    assert len(cure.nodes) == len(level4_nodes(model)) == want["level4_nodes"]
    assert list(cure.curing) == want["cured_by_level1_at"] == ["/lm_head/MatMul_Q4"]
    assert "nodes_to_exclude=/lm_head/MatMul" in cure.line()
    assert first_flip(ref, greedy(*_file("qwen3_massive/int4_level1"), PROMPT, N)) is None


def test_a_level_set_on_the_named_nodes_alone():
    """`with_levels` (each level search's decode) copies the file's message and sets the named nodes' accuracy_level:
    every other field as the file has it, the file's own message unchanged; its decode is the builder's level-1
    file's where every level-4 node is named (the same graph but for the attribute)."""
    import onnx

    from cp_debug.bisect.subjects.greedy import with_levels

    model, dec = _file("qwen3_massive/int4")
    before = model.SerializeToString()
    one = with_levels(model, ["/lm_head/MatMul_Q4"])
    assert model.SerializeToString() == before
    changed = [(a, b) for a, b in zip(model.graph.node, one.graph.node) if a != b]
    assert len(one.graph.node) == len(model.graph.node) and [a.name for a, _ in changed] == ["/lm_head/MatMul_Q4"]
    assert {a.name: a.i for a in changed[0][1].attribute}["accuracy_level"] == 1
    rest = onnx.ModelProto()
    rest.CopyFrom(one)
    rest.graph.node[list(one.graph.node).index(changed[0][1])].CopyFrom(changed[0][0])
    assert rest.SerializeToString() == before
    level1 = _file("qwen3_massive/int4_level1")
    assert greedy(with_levels(model, level4_nodes(model)), dec, PROMPT, N) == greedy(*level1, PROMPT, N)


@pytest.mark.slow
def test_bisect_runs_a_builder_file_against_its_fp32_file():
    """`--onnx FP32FILE -b ort,ort@INT4DIR`: the builder's files run side by side, the inputs made by cp_debug."""
    res = cpdebug("bisect", "--onnx", LLM / "qwen3_massive/fp32/model.onnx", "-b",
                  f"ort,ort@{LLM / 'qwen3_massive/int4'}")
    assert res.returncode in (0, 1), res.stderr
    assert "not a valid ONNX model" not in res.stderr + res.stdout
    qkv = next(line for line in res.stdout.splitlines() if "/model/layers.0/attn/qkv_proj/MatMul/output_0 " in line)
    assert "missing" not in qkv  # MatMulNBits read as the MatMul it stands for


@pytest.mark.slow
def test_bisect_generate_names_the_flipped_step_and_the_cure(tmp_path):
    """`--generate 32`: the step that flips (answers.json), the level-1 cure on lm_head verified on the decode, and
    that step's forward bisected down to lm_head's MatMulNBits."""
    prompt = tmp_path / "prompt.npz"
    np.savez(prompt, input_ids=PROMPT)
    res = cpdebug("bisect", "--onnx", LLM / "qwen3_massive/fp32/model.onnx", "-b",
                  f"ort,ort@{LLM / 'qwen3_massive/int4'}", "--inputs", prompt, "--generate", N,
                  "--json", tmp_path / "r.json")
    # the flipped step's logits (lm_head's output) beyond int4w-a8's budget (the weights' own rounding), its own error
    # 3× the other segments' median (the MLP's twin projections mapped too): a local fault there (read from the
    # report: the summary box wraps its lines where their words fall, by the paths' lengths)
    assert res.returncode == 1, res.stderr
    said = res.stdout + res.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    why = next(iter(doc["outcome_reasons"].values()))
    assert "root cause: logits" in said and "local fault at logits" in why, why
    # confirmed: the KV cache's outputs miss the element-wise tolerance as a healthy INT4 file's do, within their
    # budget before and after; judged by it, as the verdict judges them (was "confirmed by no intervention")
    root = next(iter(doc["root_cause"].values()))
    assert root["confirmed"] and root["intervention"]["tried"][0]["back"], root["hint"]
    assert "greedy step 7: token 23 → 225" in said
    assert "accuracy_level=1 on /lm_head/MatMul_Q4 alone gives the reference's tokens back" in said
    assert "nodes_to_exclude=/lm_head/MatMul" in said


def test_generate_on_a_file_without_input_ids_is_one_line(tmp_path):
    import onnx
    from onnx import helper as h

    from cp_debug.bisect.subjects.generation import generation_subject

    g = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g", [h.make_tensor_value_info("x", 1, [1, 4])],
                     [h.make_tensor_value_info("y", 1, [1, 4])])
    path = tmp_path / "relu.onnx"
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), str(path))
    with pytest.raises(BadInputError, match="no input_ids"):
        generation_subject(path, None, 0, 4, [])


def test_matmulnbits_read_as_the_matmul_it_stands_for():
    """The builder's INT4 file's float view: each MatMulNBits a MatMul of a [K, N] float weight writing the same
    output name as the FP32 file's MatMul, so the probes map by computation (not "only in the deployed graph")."""
    from cp_debug.probes.quantized_forms import float_view

    model, _ = _file("qwen3_massive/int4")
    fp32, _ = _file("qwen3_massive/fp32")
    view = float_view(model).model
    assert not any(n.op_type == "MatMulNBits" for n in view.graph.node)
    mm = {n.output[0]: n for n in view.graph.node if n.op_type == "MatMul"}
    ref = {n.output[0] for n in fp32.graph.node if n.op_type == "MatMul"}
    assert set(mm) == ref
    dims = {i.name: list(i.dims) for i in view.graph.initializer}
    assert dims[mm["logits"].input[1]] == [64, 256]


def test_weight_only_files_hold_a_precision_of_their_own():
    """MatMulNBits weights dequantized (the FP32 file's weight, up to their rounding) and their rounding measured
    from the file alone (step²/12 per element): within 10 % of the true error against the FP32 file's weights."""
    from onnx import numpy_helper

    from cp_debug.precision.held import file_precision
    from cp_debug.precision.nbits import dequantize, nbits_nodes, weight_unit

    model, _ = _file("llama/int4")
    fp32, _ = _file("llama/fp32")
    assert file_precision(model) == "int4w-a8" and file_precision(_file("qwen3_massive/int4_level1")[0]) == "int4w"
    inits = {i.name: i for i in model.graph.initializer}
    ref = {i.name: numpy_helper.to_array(i) for i in fp32.graph.initializer}
    errs = []
    for node in nbits_nodes(model):
        w = dequantize(node, inits)
        v = ref[node.input[1].replace("_Q4", "")]
        assert w.shape == v.shape and np.corrcoef(w.ravel(), v.ravel())[0, 1] > 0.99
        errs.append(float(np.sqrt(((w - v) ** 2).sum() / (v ** 2).sum())))
    unit = weight_unit(model)
    assert unit == pytest.approx(float(np.sqrt(np.mean(np.square(errs)))), rel=0.1)
    assert unit == pytest.approx(0.087, rel=0.15)


def test_a_healthy_int4_file_is_within_its_precision(tmp_path):
    """The healthy Llama's builder INT4 (level 4; its 32 tokens unchanged) against the builder's FP32 file: within
    int4w-a8's budget, 3 units of its weights' own rounding (it was "diverged" when judged at FP32); every probe
    mapped, the MLP's twin gate and up projections by their dequantized weights' values (22 of 32 before)."""
    out = tmp_path / "report.json"
    res = cpdebug("bisect", "--onnx", LLM / "llama/fp32/model.onnx", "-b", f"ort,ort@{LLM / 'llama/int4'}",
                  "--json", out)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(out.read_text())
    assert list(report["judged_at"].values()) == ["int4w-a8"]
    stage = next(iter(report["settings"]["deployed"].values()))["model"]
    assert not stage["unmapped"] and len(stage["mapped"]) == 32  # of all modules (22 before)
    for layer in (0, 1):
        for proj in ("gate_proj", "up_proj"):
            name = f"/model/layers.{layer}/mlp/{proj}/MatMul/output_0"
            assert stage["mapped"][name]["tensor"] == name


@pytest.mark.parametrize("rel, code", [("qwen3_massive/int4", 1), ("qwen3_massive/int4_level1", 0)])
def test_the_flipped_steps_forward_at_the_files_precision(tmp_path, rel, code):
    """The massive-activation Qwen3's forward of the prompt and the reference's 7 tokens (the step that flips at
    level 4): lm_head's logits a local fault beyond int4w-a8 (its INT8 activations round the massive channel's block
    to nothing); the builder's level-1 file, whose tokens are unchanged, within int4w."""
    prefix = tmp_path / "prefix.npz"
    np.savez(prefix, input_ids=np.array([ANSWERS["prompt"] + ANSWERS["models"]["qwen3_massive"]["torch_tokens"][:7]]))
    res = cpdebug("bisect", "--onnx", LLM / "qwen3_massive/fp32/model.onnx", "-b", f"ort,ort@{LLM / rel}",
                  "--inputs", prefix, "--json", tmp_path / "r.json")
    assert res.returncode == code, res.stdout + res.stderr
    why = next(iter(json.loads((tmp_path / "r.json").read_text())["outcome_reasons"].values()))
    assert ("local fault at logits" in why) if code else ("int4w's" in why), why


@pytest.mark.slow
def test_a_flip_one_setting_alone_causes_is_never_within_precision(tmp_path):
    """The RTN file (MatMulNBitsQuantizer, level 4) against the plain export: its flipped step's logits lie at 0.99×
    int4w-a8's budget, but the flip (answers.json: step 9, 86 → 207) is cured by lm_head's level 1 alone, verified on
    the decode, and lm_head's own error (3.1 units of its weights' rounding) is beyond what one matmul's roundings
    explain: a local fault there (exit 1; degraded, exit 4, by the flip alone before the weight-only segment's own
    budget), never exit 0."""
    prompt = tmp_path / "prompt.npz"
    np.savez(prompt, input_ids=PROMPT)
    out = tmp_path / "report.json"
    res = cpdebug("bisect", "--onnx", LLM / "qwen3_massive/plain/model.onnx", "-b",
                  f"ort,ort@{LLM / 'qwen3_massive/rtn_int4_level4'}", "--inputs", prompt, "--generate", N,
                  "--json", out)
    assert res.returncode == 1, res.stdout + res.stderr
    said = " ".join(res.stdout.split())
    assert "greedy step 9: token 86 → 207" in said and "node_linear_14_Q4 alone" in said
    why = next(iter(json.loads(out.read_text())["outcome_reasons"].values()))
    assert "local fault at" in why and "lm_head" in why.split("local fault at")[1].split(":")[0], why


def test_a_smaller_block_is_no_cure_of_the_rtn_flip():
    """Block size as the quantizer's cure, measured: lm_head requantized by MatMulNBitsQuantizer from the plain export
    at block 16 (the other projections at 32, all at accuracy_level 4) moves the RTN file's flip from step 9 to step
    23 — no cure of the 32-token decode — while lm_head left out (`nodes_to_exclude`) keeps every token. At level 4 the
    activation's INT8 step is its block's max |x| / 127: the massive channel's 512 makes it 4, and the rest of the
    block (~0.06) rounds to zero in a block of 16 as in one of 32. The cures cp_debug says stay accuracy_level and
    nodes_to_exclude."""
    import logging

    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer, RTNWeightOnlyQuantConfig

    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    plain = LLM / "qwen3_massive/plain/model.onnx"

    def rtn(model, block, exclude=()):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)  # the quantizer edits the model it is given
        q = MatMulNBitsQuantizer(copy, block_size=block, is_symmetric=True, accuracy_level=4,
                                 nodes_to_exclude=list(exclude), algo_config=RTNWeightOnlyQuantConfig())
        q.process()
        return q.model.model

    model, dec = _file("qwen3_massive/plain")
    ref = greedy(model, dec, PROMPT, N)
    lm_head = "node_linear_14"  # the plain export's lm_head MatMul (answers.json: node_linear_14_Q4 alone flips it)
    rest = rtn(onnx.load(str(plain)), 32, [lm_head])
    assert first_flip(ref, greedy(rest, dec, PROMPT, N)) is None  # lm_head excluded: the tokens kept
    at32 = first_flip(ref, greedy(rtn(rest, 32), dec, PROMPT, N))
    at16 = first_flip(ref, greedy(rtn(rest, 16), dec, PROMPT, N))
    want = ANSWERS["models"]["qwen3_massive"]["files"]["rtn_int4_level4"]["first_flip"]
    assert at32 is not None and at32.step == want
    assert at16 is not None and at16.step > at32.step  # later, not cured


def test_a_decode_against_the_reference_stops_at_its_first_flip():
    """`greedy(..., against=ref.tokens)`: the massive-activation INT4 file's decode stops at the token that differs
    (step 7), the steps before it the reference's — what each try of a level cure needs, not all 32 steps."""
    ref = greedy(*_file("qwen3_massive/fp32"), PROMPT, N)
    model, dec = _file("qwen3_massive/int4")
    short = greedy(model, dec, PROMPT, N, ref.tokens)
    step = ANSWERS["models"]["qwen3_massive"]["files"]["int4"]["first_flip"]
    assert len(short.tokens) == step + 1 and short.tokens[:step] == ref.tokens[:step]
    assert short.tokens[step] != ref.tokens[step]


def test_twin_projections_are_scored_within_their_layer_only():
    """`block_forms._fed_from`: the healthy Llama's gate and up projections of one layer read one input and are
    scored against each other; a layer's against another layer's are not (a 0.5 B model's 48 × 48 correlations of
    4.4 M values were minutes of its bisect)."""
    from cp_debug.probes.block_forms import _fed_from
    from cp_debug.probes.foreign import _Graph, align_anchors

    ours, foreign = load_onnx(LLM / "llama/fp32/model.onnx"), load_onnx(LLM / "llama/int4/model.onnx")
    a, b = _Graph.of(ours, foreign), _Graph.of(foreign, ours)
    fed = _fed_from(a, b, align_anchors(a, b))

    def node(g, name):
        return next(i for i, n in enumerate(g.model.graph.node) if n.output[0] == f"/model/layers.{name}/MatMul/"
                    "output_0")

    for layer, other in ((0, 1), (1, 0)):
        for proj in ("gate_proj", "up_proj"):
            i = node(a, f"{layer}/mlp/{proj}")
            assert fed(i, node(b, f"{layer}/mlp/gate_proj")) and fed(i, node(b, f"{layer}/mlp/up_proj"))
            assert not fed(i, node(b, f"{other}/mlp/gate_proj")) and not fed(i, node(b, f"{other}/mlp/up_proj"))


def test_a_decoded_file_is_not_loaded_a_second_time(tmp_path):
    """`--generate`'s decodes make their sessions from the files themselves (issue 116 item 5): the same tokens as a
    session of the model's bytes, and the run's load check of the file then takes that session as its proof (no
    second one) — a session of the bytes proves nothing of the file, and neither does one of a file changed since."""
    import os
    import shutil

    from cp_debug.backends.ort.ort_load import load_refusal
    from cp_debug.ort_sessions import loaded_as_written

    folder = tmp_path / "int4"
    shutil.copytree(LLM / "llama/int4", folder)
    path = folder / "model.onnx"
    model = load_onnx(path)
    dec = DecoderInputs.of(model, path)
    by_bytes = greedy(model, dec, PROMPT, 4)
    assert not loaded_as_written(path)
    assert greedy(model, dec, PROMPT, 4, path=path) == by_bytes
    assert loaded_as_written(path) and load_refusal(path) is None
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert not loaded_as_written(path)


def test_a_decodes_session_kept_for_the_graph_as_deployed_only_as_made(tmp_path):
    """`greedy(…, hold=True)` keeps its session of the file as written (`ort_sessions.hold`) for the candidate's graph
    as deployed (`unprobed.as_written`): the same tokens as without; taken once, and only with the options' key it was
    made with (`Determinism.numbers_key`) and the file unchanged since — else nothing, the session let go."""
    import os
    import shutil

    from cp_debug.determinism import Determinism
    from cp_debug.ort_sessions import _HELD, let_go, take

    folder = tmp_path / "int4"
    shutil.copytree(LLM / "llama/int4", folder)
    path = folder / "model.onnx"
    model = load_onnx(path)
    dec = DecoderInputs.of(model, path)
    plain = greedy(model, dec, PROMPT, 4, path=path)
    assert not _HELD
    key = Determinism().numbers_key()
    try:
        assert greedy(model, dec, PROMPT, 4, path=path, hold=True) == plain
        assert take(path, Determinism(enabled=False).numbers_key()) is None  # made otherwise: not it
        assert take(path, key) is None  # and let go of
        greedy(model, dec, PROMPT, 4, path=path, hold=True)
        assert take(path, Determinism().numbers_key(threads=1)) is None
        greedy(model, dec, PROMPT, 4, path=path, hold=True)
        sess = take(path, key)
        assert sess is not None and {o.name for o in sess.get_outputs()} >= {"logits"} and not _HELD
        greedy(model, dec, PROMPT, 4, path=path, hold=True)
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        assert take(path, key) is None  # the file changed since
    finally:
        let_go()
