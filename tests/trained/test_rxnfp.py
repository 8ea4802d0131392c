"""rxnfp 0.1.0's reaction classifier (tests/trained/rxnfp_classes.py), tried as a new user: a 12-layer BERT exported
with `torch.onnx.export`, whose attention mask the exporter writes as Where(mask, 0, -inf) added to the scores.

The right answer, without cp_debug: ONNX Runtime's `quantize_static` (Q/DQ, its defaults) calibrates the masked
scores' pair over a range reaching -inf, stores its scale as inf in every layer, and every value it dequantizes is
NaN: the exporter's NaN guard after the Softmax (Where(IsNaN, 0, …)) zeroes every attention, and every reaction gets
one class. Leaving the 12 masked-score Adds and their Softmaxes out of INT8 brings the classes back (one reaction of
30 still moves on this machine); a Softmax or an Add alone out of it does not (the other node keeps the pair).
cp_debug names a masked scores' pair with the reason the data shows: the reference's -inf, not an FP16 cast; and
offers the 12 layers' pairs left out at once (their Adds and Softmaxes: the fill's Wheres not needed); the same fault
in every layer said as one (issue 115): the root the first pair (layer 0's fill), the 24 in `root_cause.same_fault`.

The dynamo export (`torch.onnx.export(dynamo=True)`) writes the fill as float32's lowest (-3.4e38), not -inf: the
file's 13 pairs on the fill and each layer's masked scores have a finite scale of 1.33e36 (a range set by the fill),
every real score rounds to the zero point; compared through the fill they read "ok", and the root went to the
pooler's tanh. Now the same fault: the root the fill's pair, the 12 Adds and Softmaxes the cure, diverged."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.long  # an export, two quantizations and a bisect with its intervention (~3 min)
HERE = Path(__file__).resolve().parent
MASKED = [f"/bert/encoder/layer.{i}/attention/self/{op}" for i in range(12) for op in ("Add", "Softmax")]


def _quantized(src: Path, out: Path, calib: dict, exclude=(), infinite: bool = True) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{k: v[i:i + 1] for k, v in calib.items()} for i in range(len(calib["input_ids"]))])

        def get_next(self):
            return next(self.it, None)

    out.parent.mkdir(parents=True, exist_ok=True)
    with pytest.warns(RuntimeWarning) if infinite else contextlib.nullcontext():  # an infinite scale's zero point
        quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ, nodes_to_exclude=list(exclude))
    return out


def test_the_masked_scores_infinite_range_is_named_with_its_reason(tmp_path):
    import onnxruntime as ort

    from tests.trained.corpus import needs

    needs("rxnfp", "pip install --no-deps rxnfp==0.1.0: its models only")
    from tests.trained.rxnfp_classes import export, feeds

    f = feeds()
    judged, calib = ({k: v[i::2] for k, v in f.items()} for i in (0, 1))
    model = export(tmp_path / "rx.onnx")

    def classes(path: Path) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, judged)[0].argmax(-1)

    ref = classes(model)
    assert len(set(ref.tolist())) >= 4  # the five families read as distinct classes
    moved = int((classes(_quantized(model, tmp_path / "q" / "model.onnx", calib)) != ref).sum())
    cured = int((classes(_quantized(model, tmp_path / "x" / "model.onnx", calib, MASKED)) != ref).sum())
    assert moved >= 20 and cured <= 2, (moved, cured)

    np.savez(tmp_path / "x.npz", **{k: v[:6] for k, v in judged.items()})
    proc = cpdebug("bisect", "--onnx", model, "--inputs", tmp_path / "x.npz", "-b", f"ort-cpu,ort@{tmp_path / 'q'}",
                   "--metric", f"{HERE / 'rxnfp_classes.py'}:class_metric", "--json", tmp_path / "r.json")
    said = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 1, said[-3000:]
    assert "/attention/self/Where_output_0_scale' is inf in the file (the reference's values reach -inf (" in said
    assert "the same fault in 24 Q/DQ pairs, in 12 scopes (" in said, said[-3000:]
    root = json.loads((tmp_path / "r.json").read_text())["root_cause"][f"ort@{tmp_path / 'q'}"]
    assert root["probe"] == "/bert/encoder/layer.0/attention/self/Where_output_0", root["probe"]
    assert len(root["same_fault"]) == 24 and root["same_fault"][1].endswith("layer.0/attention/self/Add_output_0")
    # the confirmation made with the set, as the cure: the 24 readers left out at once bring the classes back
    assert root["confirmed"] and len(root["intervention"]["keep"]) == 24, root["intervention"]["keep"]
    assert "(the readers of the 24 pairs: 24 node(s) left out of INT8) brings" in said, said[-3000:]
    assert "FP16 cast" not in said and "(changed)" in said
    offered = said[said.index("`nodes_to_exclude=["):].split("]`")[0]  # every layer's pair at once, as by hand
    assert all(f"{n}'" in offered for n in MASKED) and "/Where'" not in offered, offered


def test_the_dynamo_exports_masked_scores_range_set_by_the_fill_is_one_fault(tmp_path):
    import onnxruntime as ort

    from tests.trained.corpus import needs

    needs("rxnfp", "pip install --no-deps rxnfp==0.1.0: its models only")
    from tests.trained.rxnfp_classes import export, feeds

    f = feeds()
    judged, calib = ({k: v[i::2] for k, v in f.items()} for i in (0, 1))
    model = export(tmp_path / "rxd.onnx", dynamo=True)
    file = _quantized(model, tmp_path / "q" / "model.onnx", calib, infinite=False)

    def classes(path: Path) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, judged)[0].argmax(-1)

    np.savez(tmp_path / "x.npz", **{k: v[:6] for k, v in judged.items()})
    proc = cpdebug("bisect", "--onnx", model, "--inputs", tmp_path / "x.npz", "-b", f"ort-cpu,ort@{tmp_path / 'q'}",
                   "--metric", f"{HERE / 'rxnfp_classes.py'}:class_metric", "--json", tmp_path / "r.json")
    said = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 1, said[-3000:]
    assert "the same fault in 13 Q/DQ pairs (" in said and "range was set by a mask's fill" in said, said[-3000:]
    root = json.loads((tmp_path / "r.json").read_text())["root_cause"][f"ort@{tmp_path / 'q'}"]
    assert len(root["same_fault"]) == 13 and root["confirmed"], root  # before: the pooler's tanh, not confirmed
    keep = root["intervention"]["keep"]
    assert len(keep) == 24 and {n.split("_")[1] for n in keep} == {"Add", "Softmax"}, keep
    ref = classes(model)  # by hand: the 24 left out of the quantizer bring the classes back (1 of 30 still moves)
    moved = int((classes(file) != ref).sum())
    cured = int((classes(_quantized(model, tmp_path / "x" / "model.onnx", calib, keep, infinite=False)) != ref).sum())
    assert moved >= 20 and cured <= 2, (moved, cured)
