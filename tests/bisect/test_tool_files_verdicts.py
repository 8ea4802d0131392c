"""cp_debug on files the real tools wrote (issue 107; tests/data/tool_files, made once by its make.py in each tool's
own environment): ModelOpt's INT8 and FP8 files, onnxruntime.quantization's dynamic and QOperator files, optimum's
ORTQuantizer, polygraphy's and onnxconverter-common's FP16 files, onnxsim's — healthy ones within precision, planted
faults named at their layer for their reason, files ONNX Runtime refuses exit 3, and the numbers shown the file's
own. `benchmarks/tool_files_verdicts.py` runs every case of the corpus."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.slow  # scheduled first under xdist (tests/conftest.py)

DATA = Path(__file__).resolve().parents[1] / "data" / "tool_files"
CASES = {c["id"]: c for c in json.loads((DATA / "cases.json").read_text())["cases"]}


def _bisect(tmp_path: Path, case: str, path: str) -> tuple[int, dict | None, str]:
    c = CASES[case]
    folder = (DATA / c["file"]).parent
    out = tmp_path / "r.json"
    if path == "onnx":
        args = ["--onnx", DATA / c["source"], "--inputs", DATA / c["inputs"], "--backends", f"ort,ort@{folder}"]
    else:
        args = ["--torch", f"{DATA / 'models.py'}:{c['torch'].split(':')[1]}", "--backends", f"torch,ort@{folder}"]
    proc = cpdebug("bisect", *args, "--json", out)
    return proc.returncode, json.loads(out.read_text()) if out.is_file() else None, proc.stderr


@pytest.mark.parametrize("case, path", [
    ("bert/healthy/modelopt-int8", "onnx"),  # its mask's finfo.min is -inf in FP16; its LayerNorm mean cancels
    ("bert/healthy/ort-quantize-dynamic", "onnx"),
    ("bert/healthy/optimum-ortquantizer-dynamic", "torch"),
    ("bert/healthy/optimum-ortquantizer-dynamic", "onnx"),
    ("bert/healthy/onnxsim", "onnx"),  # Reshape → Gemm → Reshape for each Linear
    ("cnn/healthy/ort-quantize-static-qoperator", "onnx"),  # a QLinearAdd holds the ReLU after it
    ("cnn/healthy/ort-quantize-static-qoperator", "torch"),
    ("cnn/healthy/modelopt-fp8", "torch"),
])
def test_a_healthy_file_is_within_precision(tmp_path, case, path):
    code, report, err = _bisect(tmp_path, case, path)
    assert code == 0, (report or {}).get("outcome_reasons") or err[-800:]
    cand = report["candidates"][0]
    rows = report["results"][cand]
    compared = sum(r["status"] != "missing" for r in rows)
    if path == "onnx" and "dynamic" in case:  # dynamic INT8 (optimum's quantizes attention's own MatMuls too): its
        # probes compared, at their float tensors
        assert compared >= 0.9 * len(rows)
    if path == "onnx" and "onnxsim" in case:  # every Linear a Reshape → Gemm → Reshape, reshapes sized by Shape ops
        assert compared >= 0.5 * len(rows)  # 14 of 131 before reading through them, 70 now


@pytest.mark.parametrize("case, path", [("bert/healthy/polygraphy-fp16", "onnx"),
                                        ("bert/planted/onnxconverter-fp16", "torch")])
def test_a_file_onnx_runtime_refuses_exits_3_with_its_error(tmp_path, case, path):
    code, report, err = _bisect(tmp_path, case, path)
    assert code == 3 and report is None
    line = err.strip().splitlines()[-1]  # progress lines before it; the error one line
    assert line.startswith("cpdebug: error: ") and "ONNX Runtime 1." in line
    assert "cannot load this file: Type Error" in line and "convert the FP32 file again" in line


@pytest.mark.parametrize("case, path, root, says", [
    ("cnn/planted/onnxconverter-fp16", "onnx", "/block2/conv1/Conv_output_0", "FP16 overflow at"),
    ("cnn/planted/polygraphy-fp16", "torch", "block2.bn1", "Conv '/block2/conv1/Conv': its FP32 value reaches"),
    # ModelOpt keeps the conv's float part in FP16 (its high precision): the overflow first, then INT8's outlier
    ("cnn/planted/modelopt-int8", "onnx", "/block2/conv1/Conv_output_0", "FP16 overflow in the file: it computes "
                                                                         "Conv '/block2/conv1/Conv' in FP16"),
    ("bert/planted/modelopt-fp8", "onnx", "/encoder/layer.0/output/dense/MatMul_output_0", "is inf in the file"),
    ("bert/planted/modelopt-fp8", "torch", None, "before MatMul '/encoder/layer.0/output/dense/MatMul'"),
    # issue 108: the default level probes the encoder's layers (its BertEncoder returns no tensor): the overflow
    # --onnx and --level all name, not "degraded" at the model's output with no layer named
    ("bert/planted/modelopt-int8", "torch", "bert.encoder.layer.0.output.dense", "FP16 overflow in the file"),
    # issue 117: one fault, one answer on both paths — the layer's MatMul (not its bias Add), ModelOpt's cure verified
    ("bert/planted/modelopt-int8", "onnx", "/encoder/layer.0/output/dense/MatMul_output_0",
     "computes MatMul '/encoder/layer.0/output/dense/MatMul' in FP16"),
])
def test_a_planted_fault_is_named_at_its_layer_for_its_reason(tmp_path, case, path, root, says):
    """The BN-folded conv of the planted channel (block2.bn1 holds its value for --torch) overflows FP16 (in
    ModelOpt's INT8 file too, whose float parts are FP16); ModelOpt stores the FP8 scale of the planted dense in
    FP16, where it is inf."""
    code, report, err = _bisect(tmp_path, case, path)
    assert code == 1, (report or {}).get("outcome_reasons") or err[-800:]
    rc = report["root_cause"][report["candidates"][0]]
    assert root is None or rc["probe"] == root, rc
    assert says in rc["hint"], rc
    if case == "bert/planted/modelopt-int8":
        assert "computes MatMul '/encoder/layer.0/output/dense/MatMul' in FP16" in rc["hint"], rc
        assert "op_types_to_exclude_fp16=['MatMul']`): verified" in rc["hint"], rc


def test_the_numbers_shown_are_the_files_own(tmp_path):
    """optimum's ORTQuantizer file: each probe's error as a plain ONNX Runtime session of the file computes its
    tensor, against a plain session of the FP32 file it was quantized from."""
    import onnxruntime as ort

    from cp_debug.graph.model import expose_outputs, load_onnx

    case = "bert/healthy/optimum-ortquantizer-dynamic"
    code, report, _ = _bisect(tmp_path, case, "onnx")
    assert code == 0
    cand = report["candidates"][0]
    rows = {r["probe"]: r for r in report["results"][cand] if r["status"] == "ok" and r["rel_rmse"] > 0}
    mapped = {q: m["tensor"] for st in report["settings"]["deployed"][cand].values() for q, m in st["mapped"].items()}
    picked = [q for q in rows if q in mapped]
    picked = picked[:: max(1, len(picked) // 4)][:4]  # four of them, across the network
    assert len(picked) >= 3
    feed = dict(np.load(DATA / CASES[case]["inputs"]))

    def values(path: Path, names: list[str]) -> dict:
        model = expose_outputs(load_onnx(path), names)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        wanted = {i.name for i in sess.get_inputs()}
        return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {k: v for k, v in feed.items()
                                                                              if k in wanted})))

    ref = values(DATA / CASES[case]["source"], picked)
    got = values(DATA / CASES[case]["file"], [mapped[q] for q in picked])
    for q in picked:
        err = got[mapped[q]].astype(np.float64) - ref[q]
        rel = float(np.sqrt(np.mean(err ** 2) / np.mean(ref[q].astype(np.float64) ** 2)))
        assert rel == pytest.approx(rows[q]["rel_rmse"], rel=1e-3), q
