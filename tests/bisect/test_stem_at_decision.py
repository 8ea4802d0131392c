"""The layer that alone brings a decision back where its own error ranks low (issue 115, items 1-3;
bisect/cures/decision_layer.py). open_nsfw's per-tensor INT8 file (docs/trained-models.md, "open_nsfw's first conv"):
of its 74 nodes left out of INT8 one at a time, only the stem conv brings every band back, its outputs still beyond
cp_debug's budget; its weights rounded per tensor, 16 % of them to zero. cp_debug never tried it (its own error ranks
low) and named a later conv, or "no single layer". The graph here (tests/bisect/int8_stem_rounding.py) has that shape.

The right answer without cp_debug (plain ONNX Runtime, `quantize_static` with `nodes_to_exclude`, each weighted node
left out alone): the file flips labels; the stem left out flips none; every other one left out alone leaves most
flipped. Before: the stem "placed by its run alone, confirmed by no restoration" (the intervention's `confirmed`
false); now "confirmed at the decision", its exclusion the cure verified there, its weight alone read in float run —
with `--metric` and, since the eleventh stop, without it (the Softmax's output read at its argmax, the decision the
run judges where none is declared: before, the early layers were tried only for a declared one)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.long  # eleven quantizations of a small graph and a bisect with its intervention (~20 s)
HERE = Path(__file__).resolve().parent


def test_the_first_conv_is_the_root_at_the_declared_decision(tmp_path):
    import onnxruntime as ort

    from tests.bisect.int8_stem_rounding import STEM, build, samples
    from tests.trained.corpus import int8

    model = build()
    onnx.save(model, tmp_path / "fp32.onnx")
    calib = [{"x": samples(1, 100 + i)} for i in range(16)]
    x = samples(256, 2)

    def labels(m) -> np.ndarray:
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"x": x})[0].argmax(1)

    p = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    x = x[np.abs(p[:, 1] - 0.5) > 0.05][:64]  # samples the application decides clearly (no tie left to ISA noise)
    ref = labels(model)
    logging.disable(logging.WARNING)  # the quantizer's advice to pre-process
    try:
        user = int8(model, calib)
        moved = int(np.sum(labels(user) != ref))
        assert moved >= 8  # the file flips labels
        assert np.sum(labels(int8(model, calib, keep=(STEM,))) != ref) == 0  # the stem left out alone: none
        weighted = [n.name for n in model.graph.node if n.op_type in ("Conv", "MatMul") and n.name != STEM]
        for name in weighted:  # every other one left out alone leaves most flipped
            assert np.sum(labels(int8(model, calib, keep=(name,))) != ref) >= moved // 2, name
    finally:
        logging.disable(logging.NOTSET)
    (tmp_path / "q").mkdir()
    onnx.save(user, tmp_path / "q" / "model.onnx")

    np.savez(tmp_path / "x.npz", x=x)
    # declared (`--metric`), and not: the Softmax's output read at its argmax is the same decision (issue 115: the
    # early layer at a decision without `--metric`; before, "placed by its run alone" there, `confirmed` false)
    for metric in (["--metric", f"{HERE / 'int8_stem_rounding.py'}:label_metric"], []):
        proc = cpdebug("bisect", "--onnx", tmp_path / "fp32.onnx", "--inputs", tmp_path / "x.npz", "-b",
                       f"ort-cpu,ort@{tmp_path / 'q'}", *metric, "--json", tmp_path / "r.json", "--quiet")
        # a declared metric changed: diverged (1); the outputs read at argmax, 15 of 64 flipped: degraded (4), never
        # within precision, the decision said first (the twelfth stop: before, the noise model's words alone)
        assert proc.returncode == (1 if metric else 4), proc.stdout[-3000:] + proc.stderr[-2000:]
        report = json.loads((tmp_path / "r.json").read_text())
        said = "the decision changes: --metric" if metric else "the decision changes (no --metric declared"
        assert next(iter(report["outcome_reasons"].values())).startswith(said), report["outcome_reasons"]
        cause = next(iter(json.loads((tmp_path / "r.json").read_text())["root_cause"].values()))
        found = cause["intervention"]
        # before: the stem not tried, or "placed by its run alone" with `confirmed` false
        assert cause["probe"] == "c0" and found["confirmed"] and found["at_decision"], (metric, found)
        assert found["keep"] == [STEM], found
        said = "label_metric), its outputs" if metric else "the decision back ('probs' at its argmax), its outputs"
        assert "confirmed at the decision" in cause["hint"] and said in cause["hint"], cause["hint"]
        assert ("the declared decision back" in cause["hint"]) == bool(metric), cause["hint"]
        stem = [t for t in found["tried"] if t["candidate"] == "c0" and t["nodes"] == [STEM]]
        assert stem and stem[0]["output_error_after"]["decisions_flipped"] == 0, found["tried"]
        assert stem[0]["output_error_after"]["ratio"] <= 0.5 * found["output_error"]["ratio"], stem
