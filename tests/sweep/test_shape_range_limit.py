"""A shape range past what the model itself runs (issue 117): a BERT of 256 positions searched to 512 tokens, its
reference raising from 257 on, was reported as the candidate's failure ("ort-cpu-fp16 first fails at 1x257",
diverged, exit 1). The reference's own limit is searched first, said once, and bounds the candidates' searches; the
sweep's table carries no paragraph in a cell (a failed shape's error went into it whole, lines of 1,515 characters).
The model here is a hand-built ONNX file with a 256-row position table sliced to the sequence's length, as a BERT's
absolute positions are (its Add cannot broadcast past 256 rows, in ONNX Runtime's FP32 reference as in FP16)."""

from __future__ import annotations

import json

import numpy as np

from tests.cli_run import cpdebug


def _positions_model(path, rows: int = 256, hidden: int = 8):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((16, hidden)).astype(np.float32), "embed"),
             numpy_helper.from_array(rng.standard_normal((rows, hidden)).astype(np.float32) * 0.1, "positions"),
             numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([1], np.int64), "one"),
             numpy_helper.from_array(rng.standard_normal((hidden, 4)).astype(np.float32), "head")]
    nodes = [helper.make_node("Gather", ["embed", "ids"], ["tok"], name="embed"),
             helper.make_node("Shape", ["ids"], ["shape"], name="shape"),
             helper.make_node("Slice", ["shape", "one", "one"], ["len1"], name="len_of"),  # placeholder, replaced
             helper.make_node("Gather", ["shape", "one"], ["seq"], name="seq_len", axis=0),
             helper.make_node("Slice", ["positions", "zero", "seq"], ["pos"], name="pos_slice"),
             helper.make_node("Add", ["tok", "pos"], ["h"], name="add_pos"),
             helper.make_node("MatMul", ["h", "head"], ["out"], name="head")]
    del nodes[2]
    graph = helper.make_graph(nodes, "bert_positions",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, "seq"])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, "seq", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def test_the_reference_limit_bounds_the_search_and_is_said_once(tmp_path):
    _positions_model(tmp_path / "m.onnx")
    res = cpdebug("sweep", "--onnx", tmp_path / "m.onnx", "--min-shapes", "ids:1x8", "--max-shapes", "ids:1x512",
                  "-b", "ort-cpu,ort-cpu-fp16", "--out", "o", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr  # within precision up to the model's limit
    search = json.loads((tmp_path / "o" / "sweep.json").read_text())["shape_search"]
    limit = search["model_limit"]
    assert limit["first_failing"] == {"ids": [1, 257]} and limit["searched_to"] == {"ids": [1, 256]}
    cand = search["candidates"]["ort-cpu-fp16"]
    assert cand["status"] == "passes_at_max" and cand["first_failing"] is None
    assert "first fails" not in res.stdout and "the model's own limit" in res.stdout
    assert max(map(len, res.stdout.splitlines())) <= 200  # the error under the table at most, not in a cell


def test_a_table_cell_never_carries_a_paragraph():
    from rich.console import Console

    from cp_debug.report.table import Notes

    notes, long = Notes(), "RuntimeError: " + "the expanded size of the tensor must match " * 8
    assert notes.cell(long).startswith("[1] ") and len(notes.cell(long)) <= Notes.WIDE
    assert notes.cell(long) == notes.cell(long) and notes.cell("short") == "short"
    console = Console(record=True, width=300)
    notes.print(console)
    assert " ".join(console.export_text().split()) == " ".join(f"[1] {long}".split())  # said whole, under the table
