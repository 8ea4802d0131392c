"""An HF encoder as users export and quantize it (issue 107): TorchScript's export with dynamic batch and sequence
axes (as optimum writes it), then onnxruntime.quantization's `quantize_dynamic` (the transformer INT8 file of
optimum's ORTQuantizer); the real exporter, quantizer and CLI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug
from tests.zoo import hf_models

pytestmark = pytest.mark.slow  # scheduled first under xdist (tests/conftest.py)

HF = Path(hf_models.__file__)
pytest.importorskip("transformers")


def _exported(tmp_path: Path, build: str = "build_bert_sdpa_masked") -> tuple[Path, Path]:
    """The model's file as torch.onnx.export writes it with dynamic axes, and its inputs as an .npz."""
    import torch

    model, (ids, mask) = getattr(hf_models, build)()
    path = tmp_path / "model.onnx"
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False)
    feeds = tmp_path / "x.npz"
    np.savez(feeds, input_ids=ids.numpy(), attention_mask=mask.numpy())
    return path, feeds


def test_a_bert_whose_mask_is_minus_inf_in_fp32_too_is_within_precision_in_fp16(tmp_path):
    """The -inf the reference holds itself is no NaN/Inf of the candidate's (before: "diverged" at the mask's Where,
    "64 Inf where the reference is finite"); the sequence length's 0-d tensor crosses the lockstep's cuts as a
    scalar (before: exit 70, a Concat of ranks 2 and 1)."""
    path, feeds = _exported(tmp_path)
    out = tmp_path / "r.json"
    proc = cpdebug("bisect", "--onnx", path, "--inputs", feeds, "--backends", "ort,ort-cpu-fp16", "--level", "all",
                   "--json", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = report["results"]["ort-cpu-fp16"]
    assert not [r for r in rows if r["inf"] or r["nan"]]
    assert not [r for r in rows if (r.get("note") or "").startswith("a mask:")]  # no saturation: FP32's own -inf
    assert not [w for w in report["warnings"] if "third-party" in w and "subtract" in w]


def test_a_dynamic_int8_file_compares_every_module_at_the_float_tensor_that_carries_it(tmp_path):
    """`quantize_dynamic` names each activation's DynamicQuantizeLinear into the scope of the module it quantizes
    (`…/LayerNorm/LayerNormalization_output_0_QuantizeLinear`): its uint8 output is no module's value. Before, the
    LayerNorms, GELUs and attentions were compared at it (rel. RMSE 140-1460, "diverged" at embeddings.LayerNorm);
    now at the float tensor, each value equal to a plain ONNX Runtime session's of the file."""
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from cp_debug.graph.model import expose_outputs, load_onnx

    path, feeds = _exported(tmp_path)
    deployed = tmp_path / "deploy"
    deployed.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(path), str(deployed / "model.onnx"), weight_type=QuantType.QUInt8)
    out = tmp_path / "r.json"
    proc = cpdebug("bisect", "--torch", f"{HF}:build_bert_sdpa_masked", "--backends", f"torch,ort@{deployed}",
                   "--level", "all", "--json", out)
    report = json.loads(out.read_text())
    cand = report["candidates"][0]
    assert proc.returncode == 0, report["outcome_reasons"]
    rows = {r["probe"]: r for r in report["results"][cand]}
    assert len(rows) >= 30 and all(r["status"] == "ok" for r in rows.values())
    mapped = report["settings"]["deployed"][cand]
    tensors = {q: m["tensor"] for stage in mapped.values() for q, m in stage["mapped"].items()}
    assert not [t for t in tensors.values() if t.endswith("_quantized")], tensors  # no integer form compared
    # the numbers are the file's own: each module's error as a plain session of the file computes its tensor
    wanted = ["bert.embeddings.LayerNorm", "bert.encoder.layer.0.intermediate.intermediate_act_fn",
              "bert.encoder.layer.1.attention.output.LayerNorm"]
    plain = expose_outputs(load_onnx(deployed / "model.onnx"), [tensors[q] for q in wanted])
    sess = ort.InferenceSession(plain.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, dict(np.load(feeds)))))
    model, inputs = hf_models.build_bert_sdpa_masked()
    ref = {}
    hooks = [model.get_submodule(q).register_forward_hook(lambda m, i, o, q=q: ref.__setitem__(q, o.detach().numpy()))
             for q in wanted]
    with torch.no_grad():
        model(*inputs)
    for h in hooks:
        h.remove()
    for q in wanted:
        err = got[tensors[q]] - ref[q]
        rel = float(np.sqrt(np.mean(err.astype(np.float64) ** 2) / np.mean(ref[q].astype(np.float64) ** 2)))
        assert rel == pytest.approx(rows[q]["rel_rmse"], rel=1e-3), q
        assert rows[q]["rel_rmse"] < 0.05, q  # uint8 rounding (1 % here), not the integer form's 140×


def test_torchscripts_file_against_cp_debugs_own_export_differs_only_in_form(tmp_path):
    """The user's file from TorchScript's exporter (optimum's, `/bert/encoder/layer.0/...`) against cp_debug's own
    dynamo export (`node_MatMul_54`): the same computation — Linears written `Add(bias, MatMul)`, shared weights read
    through Identity nodes, shape arithmetic, SDPA's and GELU's ops each its own way — so no node is a change of the
    computation (before: 142 nodes "only in the deployed graph", the root cause's hint a list of them)."""
    path, _ = _exported(tmp_path)
    deployed = tmp_path / "deploy"
    deployed.mkdir()
    path.rename(deployed / "model.onnx")
    out = tmp_path / "r.json"
    proc = cpdebug("bisect", "--torch", f"{HF}:build_bert_sdpa_masked", "--backends", f"torch,ort@{deployed}",
                   "--json", out)
    report = json.loads(out.read_text())
    assert proc.returncode == 0, report["outcome_reasons"]
    cand = report["candidates"][0]
    diffs = report["graph_differences"][cand]
    changes = [n for side in ("only_in_candidate", "only_in_reference") for n in diffs[side]
               if n.get("computes", True) and n["op_type"] not in ("Cast", "QuantizeLinear", "DequantizeLinear")]
    assert not changes, changes
    forms = {n["op_type"] for n in diffs["only_in_candidate"] if n.get("computes") is False}
    assert "Shape" in forms and "Identity" not in forms  # shapes counted as the exporter's form; a shared weight's
    # Identity is that weight


@pytest.mark.parametrize("level", [None, "all"])
def test_a_weight_the_fp16_converter_clamped_is_the_root_causes_why(tmp_path, level):
    """onnxconverter-common clamps a weight past 1e4 to 1e4 (its UserWarning aside, silently): the file computes
    another layer. The root cause's segment reads that weight, so its why is the clamp with its numbers (before:
    "FP16 rounding introduced by this layer (local rel. error 0.38)", or 142 graph differences at the default
    level); at `--level all` the layer itself, `output.dense`."""
    float16 = pytest.importorskip("onnxconverter_common.float16")
    import onnx

    path, _ = _exported(tmp_path, "build_bert_sdpa_clamped")
    deployed = tmp_path / "deploy"
    deployed.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx.save(float16.convert_float_to_float16(onnx.load(path), keep_io_types=True), deployed / "model.onnx")
    out = tmp_path / "r.json"
    proc = cpdebug("bisect", "--torch", f"{HF}:build_bert_sdpa_clamped", "--backends", f"torch,ort@{deployed}",
                   *(["--level", level] if level else []), "--json", out)
    report = json.loads(out.read_text())
    assert proc.returncode == 1, report["outcome_reasons"]
    root = report["root_cause"][report["candidates"][0]]
    assert root["hint"].startswith("the file's weight differs from the model's here: "
                                   "bert.encoder.layer.0.output.dense.weight"), root
    assert "clamped to ±1e4 by the FP16 conversion" in root["hint"] and "rounding introduced" not in root["hint"]
    assert "graph difference" not in root["hint"]
    if level == "all":
        assert root["probe"] == "bert.encoder.layer.0.output.dense"
