"""The whole path on files the real tools wrote (issue 107, item 6): bisect on the corpus's deployed INT8 CNN with the
planted outlier (tests/data/tool_files: ModelOpt 0.47 and ONNX Runtime's quantize_static, QDQ) names the planted
layer's range and the cure in the producing tool's own terms, tried on the file; then fix on the FP32 file the tools
quantized writes the exclusion in both tools' spellings, and `fix --check` holds. Real ONNX Runtime, the CLI through
tests/cli_run.py. INT8 kernels differ between CPUs: names and ratios with margins, never exact figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug

CORPUS = Path(__file__).resolve().parents[1] / "data" / "tool_files"
CNN = CORPUS / "cnn" / "outlier"
FP32 = CNN / "torch-export" / "model.onnx"
PLANTED, READER = "/block2/conv1/Conv", "/block2/conv2/Conv"  # the BN-folded plant, and the conv reading its channel


def _bisect(tool: str, tmp_path: Path) -> str:
    out = tmp_path / f"{tool}.json"
    proc = cpdebug("bisect", "--onnx", FP32, "--inputs", CORPUS / "cnn_inputs.npz", "-b", f"ort,ort@{CNN / tool}",
                   "--json", out, "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]  # diverged: beyond INT8
    (cause,) = json.loads(out.read_text())["root_cause"].values()
    assert cause["probe"] == f"{READER}_output_0", cause
    hint = cause["hint"]
    assert f"Q/DQ on Conv '{READER}''s input '/block2/relu/Relu_output_0' rounds" in hint, hint
    assert f"a range set by channel 28 of Conv '{PLANTED}''s output" in hint, hint  # the planted layer, named
    return hint


def _figures(text: str) -> tuple[float, float, float]:
    """before, after, ratio to the budget of a tried cure's 'rel. RMSE B → A, R× int8's budget'."""
    b, a, r = re.search(r"rel\. RMSE ([\d.e+-]+) → ([\d.e+-]+), ([\d.e+-]+)× int8's budget", text).groups()
    return float(b), float(a), float(r)


@pytest.fixture
def samples(tmp_path):
    calib = np.load(CORPUS / "cnn_calib.npz")["input"]
    folder = tmp_path / "samples"
    folder.mkdir()
    for i in range(len(calib)):
        np.savez(folder / f"s{i}.npz", input=calib[i:i + 1])
    return folder


def test_the_whole_path_from_a_tools_int8_file_to_a_checked_fix(tmp_path, samples):
    hint = _bisect("modelopt-int8", tmp_path)  # ModelOpt's layout: per-channel weights, so the reader alone cures
    assert f"re-quantize with `nodes_to_exclude=['{READER}']` (ModelOpt: `modelopt.onnx.quantization.quantize(" in hint
    assert "quantize_static" not in hint and ": verified — " in hint, hint
    before, after, ratio = _figures(hint)
    assert before > 0.1 and after < 0.02 and ratio < 0.5, hint

    hint = _bisect("ort-quantize-static-qdq", tmp_path)  # per-tensor weights: the planted conv must go too
    both = [PLANTED, READER]
    assert f"re-quantize with `nodes_to_exclude={both!r}` (ONNX Runtime: `quantize_static(..., " in hint, hint
    assert "modelopt" not in hint and ": verified — " in hint, hint
    assert _figures(hint)[2] < 0.5, hint
    alone = hint.split(f"{[READER]!r} alone was not enough (")[1]
    assert _figures(alone)[2] > 1.5, hint

    held = cpdebug("fix", "--onnx", FP32, "-b", f"ort,ort@{CNN / 'modelopt-int8'}", "--inputs", samples,
                   "--out", tmp_path / "no")  # the tool's file itself: one line saying what fix takes instead
    assert held.returncode == 2 and held.stderr.strip().count("\n") == 0, held.stderr
    assert "fix searches on the FP32 graph" in held.stderr and "bisect -b ort,ort@DIR" in held.stderr

    out = tmp_path / "fix"
    proc = cpdebug("fix", "--onnx", FP32, "-b", "ort,ort-cpu-int8", "--calib", CORPUS / "cnn_calib.npz",
                   "--inputs", samples, "--out", out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    doc = json.loads((out / "fix.json").read_text())
    nodes = doc["set"]["nodes_to_exclude"]
    assert {PLANTED, READER} & set(nodes), nodes
    assert doc["set"]["onnxruntime"]["nodes_to_exclude"] == nodes
    assert f"nodes_to_exclude={nodes!r}" in doc["set"]["onnxruntime"]["call"]
    assert doc["set"]["modelopt"]["nodes_to_exclude"] == nodes
    assert doc["set"]["modelopt"]["command"].endswith("--quantize_mode=int8 --nodes_to_exclude " + " ".join(nodes))
    assert json.loads((out / "nodes_to_exclude.json").read_text()) == {"model_int8.onnx": nodes}

    check = cpdebug("fix", "--check", out)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-2000:]
    assert "holds here" in check.stdout


def test_the_producing_tool_is_told_from_the_file_and_the_cure_edits_only_the_nodes_left_out():
    """ModelOpt's files and ORT's quantizer's told apart by what each writes (every Q/DQ file of the corpus); the
    cure's file keeps every other Q/DQ pair — and the pair ORT's quantizer writes with a Conv kept on the output the
    node left out reads (issue 115, `qdq_removal.output_paired`) —, gives back ORT's folded ReLU, and refuses a
    dequantized weight; ModelOpt pairs no Conv's output: its reader alone left out reads it float."""
    import onnx

    from cp_debug.bisect.cures.qdq_exclude import MODELOPT, ONNXRUNTIME, NoFloatWeight, producer, without_qdq

    for path in sorted(CORPUS.glob("*/*/*/*.onnx")):
        model = onnx.load(path, load_external_data=False)
        if any(n.op_type == "DequantizeLinear" for n in model.graph.node):
            tool = path.parent.name
            want = MODELOPT if tool.startswith("modelopt") else ONNXRUNTIME
            assert producer(model) == want, path
    ort = onnx.load(CNN / "ort-quantize-static-qdq" / "model.onnx")
    with pytest.raises(NoFloatWeight, match=READER):
        without_qdq(ort, [READER])  # its weight stored INT8 and no FP32 graph to read it from
    ops = lambda m: [n.op_type for n in m.graph.node]  # noqa: E731
    # the reader alone: ORT's quantizer quantizes a Conv's output with the Conv, so `quantize_static(nodes_to_exclude=
    # [READER])` keeps the pair the planted conv writes (by hand on this FP32 file: 12 QuantizeLinear either way, the
    # reader reading a DequantizeLinear); the reader's weight alone goes float
    edited = without_qdq(ort, [READER], onnx.load(FP32))
    assert ops(edited).count("QuantizeLinear") == ops(ort).count("QuantizeLinear")
    conv = next(n for n in edited.graph.node if n.name == READER)
    assert next(n for n in edited.graph.node if conv.input[0] in n.output).op_type == "DequantizeLinear"
    # its writer left out too: the pair goes (by hand: 11 QuantizeLinear, the reader reading the ReLU ORT folded)
    edited = without_qdq(ort, [PLANTED, READER], onnx.load(FP32))
    assert ops(edited).count("QuantizeLinear") == ops(ort).count("QuantizeLinear") - 1
    conv = next(n for n in edited.graph.node if n.name == READER)
    relu = next(n for n in edited.graph.node if conv.input[0] in n.output)
    assert relu.op_type == "Relu" and relu.input[0] == "/block2/relu/Relu_output_0"  # the ReLU ORT folded
    mo = onnx.load(CNN / "modelopt-int8" / "model.onnx")
    edited = without_qdq(mo, [READER], onnx.load(FP32))  # its input's pair and its weight's
    assert ops(edited).count("QuantizeLinear") == ops(mo).count("QuantizeLinear") - 2
    conv = next(n for n in edited.graph.node if n.name == READER)
    assert next(n for n in edited.graph.node if conv.input[0] in n.output).op_type == "Relu"


def test_an_fp16_overflow_inside_a_modelopt_int8_file_is_named_at_its_layer_with_modelopts_cure_tried(tmp_path):
    """The x1.25e5 plant: ModelOpt keeps the float parts in FP16 (high_precision_dtype='fp16'), so the BN-folded
    conv's output (9.5e4) is inf in the file. Named as that, at that conv, before any range; the file widened to FP32
    cures the overflow and leaves INT8's outlier loss (the x1000 plant's), so not enough alone, with its figure."""
    out = tmp_path / "r.json"
    planted = CORPUS / "cnn" / "planted"
    proc = cpdebug("bisect", "--onnx", planted / "torch-export" / "model.onnx", "--inputs", CORPUS / "cnn_inputs.npz",
                   "-b", f"ort,ort@{planted / 'modelopt-int8'}", "--json", out, "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    (cause,) = json.loads(out.read_text())["root_cause"].values()
    hint = cause["hint"]
    assert cause["probe"] == f"{PLANTED}_output_0", cause
    assert hint.startswith(f"FP16 overflow in the file: it computes Conv '{PLANTED}' in FP16"), hint
    assert "high_precision_dtype='fp32'" in hint and "op_types_to_exclude_fp16=['Conv']" in hint, hint
    assert ": tried and not enough — the file with its FP16 widened to FP32" in hint, hint
    before, after, ratio = _figures(hint)
    assert before > 1 and 0.1 < after < 0.5 and ratio > 1.5, hint  # 2.09 -> 0.213: the overflow gone, INT8's loss left


def test_fix_takes_calib_as_bisect_does_repeated_or_a_folder(tmp_path):
    """`bisect --calib a.npz --calib b.npz` pasted into fix (the path bisect's advice leads to) was refused ("--calib
    given 2 times"): every command reads --calib by one reader (bisect/subjects/feeds.calib_files), repeated files or a
    folder of them; the batch of 8 and the one sample are 9 samples in fix as in bisect."""
    calib = ("--calib", CORPUS / "cnn_calib.npz", "--calib", CORPUS / "cnn_inputs.npz")
    proc = cpdebug("fix", "--onnx", FP32, "-b", "ort,ort-cpu-int8", *calib, "--inputs", CORPUS / "cnn_inputs.npz",
                   "--out", tmp_path / "fix", "--quiet")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert len(json.loads((tmp_path / "fix" / "fix.json").read_text())["calibration"]) == 9
    folder = tmp_path / "cal"
    folder.mkdir()
    for name in ("cnn_calib.npz", "cnn_inputs.npz"):
        (folder / name).write_bytes((CORPUS / name).read_bytes())
    proc = cpdebug("bisect", "--onnx", FP32, "-b", "ort,ort-cpu-int8", "--calib", folder, "--inputs",
                   CORPUS / "cnn_inputs.npz", "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]  # diverged, as with the files given
    (stage,) = json.loads((tmp_path / "r.json").read_text())["settings"]["backends"]["ort-cpu-int8"].values()
    assert stage["precision_transform"]["calibration_feeds"] == 9


@pytest.mark.parametrize("command, given, why", [
    ("fix", "missing.npz", "missing.npz: not found"),
    ("fix", "empty", "empty: a folder with no .npz file in it"),
    ("fix", "bad.npz", "bad.npz: not a valid .npz file"),
    ("bisect", "empty", "empty: a folder with no .npz file in it"),
    ("sweep", "bad.npz", "bad.npz: not a valid .npz file"),
    ("eval", "missing.npz", "missing.npz: not found"),
])
def test_a_bad_calib_is_the_same_one_line_in_every_command(tmp_path, command, given, why):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.npz").write_text("not an npz")
    out = ("--out", "o") if command in ("fix", "sweep") else ()
    proc = cpdebug(command, "--onnx", FP32, "-b", "ort,ort-cpu-int8", "--inputs", CORPUS / "cnn_inputs.npz",
                   "--calib", given, *out, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    (line,) = proc.stderr.strip().splitlines()
    assert f"--calib {why}" in line, line
    assert "--calib takes .npz files (keys as --inputs; each array one sample or a batch along a first axis): repeat " \
           "it for several, or give a folder of them" in line, line
    assert not (tmp_path / "o").exists()  # nothing written
