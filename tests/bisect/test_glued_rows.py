"""Rows say what their numbers say: a glued input row (a stage input the subject's glue computes from the
previous stage's outputs, like CenterPoint's spatial_features from pillar_features) gets the status of the
output row it is glued from, and the table says why where its own share would say otherwise; "max/|ref|max"
stays readable where the per-element max_rel explodes on near-zero references."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn

from cp_debug.bisect.engine import BisectEngine, BisectOptions
from cp_debug.bisect.subjects.subject import Stage, Subject
from cp_debug.backends.spec import BackendSpec
from cp_debug.compare.diff import TensorDiff
from cp_debug.export.torch_export import export_module
from cp_debug.report.table import render_table

N, C, SIDE = 100, 4, 32  # 100 pillars of 4 features, scattered into a 4×32×32 canvas (4,096 elements)


def _stage(name: str, module: nn.Module, example: torch.Tensor, inp: str, out: str) -> Stage:
    module = module.eval()
    return Stage(name=name, input_names=(inp,), output_names=(out,), module=module, example_inputs=(example,),
                 export=lambda: export_module(module, (example,), (inp,), (out,), exporter="torchscript", opset=17))


def _subject(glue_kind: str) -> Subject:
    """Stage 0 passes its input through an identity Linear; the glue scatters it into a canvas (or passes it
    on as it is); stage 1 is a 1×1 conv (a Linear for the identity glue)."""
    lin = nn.Sequential(OrderedDict(enc=nn.Linear(C, C, bias=False)))
    with torch.no_grad():
        lin.enc.weight.copy_(torch.eye(C))
    x = np.full((N, C), 0.5, np.float32)  # exact in float16 …
    x[3, 1] = x[40, 2] = 1000.3  # … but these two are not: FP16 rounds them by 0.2, beyond atol 1e-3
    if glue_kind == "scatter":
        nxt = nn.Sequential(OrderedDict(head=nn.Conv2d(C, C, 1)))
        second = _stage("s1", nxt, torch.zeros(1, C, SIDE, SIDE), "canvas", "y")

        def glue(index, up):
            canvas = np.zeros((1, C, SIDE * SIDE), np.float32)
            canvas[0, :, :N] = np.asarray(up["feat"]).T
            return {"canvas": canvas.reshape(1, C, SIDE, SIDE)}
    else:
        nxt = nn.Sequential(OrderedDict(head=nn.Linear(C, C)))
        second = _stage("s1", nxt, torch.zeros(N, C), "canvas", "y")

        def glue(index, up):
            return {"canvas": np.asarray(up["feat"])}
    first = _stage("s0", lin, torch.from_numpy(x), "x", "feat")
    return Subject(name=f"glued-{glue_kind}", stages=[first, second], inputs={"x": x}, glue=glue,
                   default_level="stage")


def _run(glue_kind: str, backends: tuple[str, str]):
    ref, cand = backends
    engine = BisectEngine(_subject(glue_kind), (ref, BackendSpec.parse(ref)), [(cand, BackendSpec.parse(cand))],
                          # the element-wise check is what a scatter dilutes (the noise model's rel. RMS is not)
                          BisectOptions(atol=1e-3, rtol=0.0, refine=False, tolerance_mode="fixed"))
    try:
        report = engine.run()
    finally:
        engine.close()
    return report, {r.probe: r for r in report.candidate(cand).results}


# ort,ort-cpu-fp16 runs both stages in lockstep; torch,torch-cpu-fp16 runs them whole
@pytest.mark.parametrize("backends", [("ort", "ort-cpu-fp16"), ("torch", "torch-cpu-fp16")])
def test_a_scattered_input_row_is_judged_with_the_output_row_it_is_glued_from(backends):
    report, rows = _run("scatter", backends)
    out, inp = rows["feat"], rows["canvas"]
    # the same two elements are beyond tolerance in both rows: the same numbers…
    assert out.diff.max_abs == pytest.approx(inp.diff.max_abs) and out.diff.max_abs > 0.1
    assert out.diff.rel_max == pytest.approx(inp.diff.rel_max)
    assert round(out.diff.share_beyond * N * C) == round(inp.diff.share_beyond * C * SIDE * SIDE) == 2
    # …and the same status, though the canvas's own share (2 of 4,096) is under FP16's max_share of 1e-3
    tol = report.settings["tolerance"][backends[1]]
    assert out.diff.share_beyond > tol["max_share"] > inp.diff.share_beyond
    assert out.status == inp.status == "diverged"
    assert out.note is None
    assert "judged as feat" in inp.note and "2 of its 4,096 elements" in inp.note and "10.2× larger" in inp.note
    # the table says why, under the rows
    console = Console(record=True, width=200, color_system=None)
    render_table(report, console)
    text = console.export_text()
    assert "note canvas: judged as feat" in text
    row = next(line for line in text.splitlines() if " canvas " in line and "Input" in line)
    assert "diverged" in row


def test_the_same_values_as_output_row_and_next_input_row_get_the_same_status():
    _, rows = _run("identity", ("ort", "ort-cpu-fp16"))
    out, inp = rows["feat"], rows["canvas"]
    assert inp.diff.max_abs == out.diff.max_abs and inp.diff.share_beyond == out.diff.share_beyond
    assert out.status == inp.status == "diverged"
    assert inp.note is None  # judged on its own numbers: nothing to explain


def test_rel_max_is_robust_to_near_zero_references_and_reaches_json():
    ref = np.array([1e-13, 2.0, -4.0, 0.0], np.float32)
    test = ref + np.array([1e-3, 1e-3, -2e-3, 0.0], np.float32)
    d = TensorDiff.from_arrays("t", ref, test)
    assert d.max_rel > 1e8  # 1e-3 / 1e-13: says nothing about this tensor
    assert d.rel_max == pytest.approx(2e-3 / 4.0, rel=1e-3)
    assert d.to_json()["rel_max"] == d.rel_max
    assert TensorDiff.from_arrays("z", np.zeros(3), np.zeros(3)).rel_max == 0.0
    assert TensorDiff.from_arrays("z", np.zeros(3), np.ones(3)).rel_max == float("inf")
    assert np.isnan(TensorDiff.from_arrays("s", np.zeros(3), np.zeros(4)).rel_max)


@pytest.mark.slow
def test_rel_max_in_table_json_csv_and_html(tmp_path):
    from cp_debug.report.frames import write_csv
    from cp_debug.report.html import write_html

    report, rows = _run("scatter", ("ort", "ort-cpu-fp16"))
    row = next(r for r in report.to_json()["results"]["ort-cpu-fp16"] if r["probe"] == "feat")
    assert row["rel_max"] == pytest.approx(row["max_abs"] / row["ref_absmax"])
    assert row["max_rel"] is not None  # the raw per-element ratio stays in the JSON (the schema is extended)
    csv = (write_csv(report, tmp_path / "run.csv")).read_text().splitlines()
    assert "rel_max" in csv[0].split(",") and "max_rel" in csv[0].split(",")
    html = write_html(report, tmp_path / "run.html").read_text()
    assert "max/|ref|max" in html and ">max rel<" not in html
    console = Console(record=True, width=200, color_system=None)
    render_table(report, console)
    assert "|ref|max" in console.export_text() and "max rel" not in console.export_text()
