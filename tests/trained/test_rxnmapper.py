"""rxnmapper's ALBERT (tests/trained/rxnmapper_albert.py, tried as a new user, docs/trained-models.md eleventh stop):
transformers' attention mask, its finfo.min fill (-3.4e38), as the users' converters leave it, judged at the
application's decision (each product atom's reactant atom, layer 10's head 5).

By hand: onnxconverter-common clamps the fill to -1e4 (no Inf); every one of the 356 product atoms keeps its reactant
atom in a plain ONNX Runtime session, 355 in float16 as a GPU computes it (the batch's closest tie, 0.3235 against
0.3242). `quantize_static` calibrated on unpadded reactions sets the logits' pair to [-38.6, 40.1] and the mask's to
[-128, 127]; 23 of 356 atoms move, neither half of the quantized nodes left out brings them back, and leaving the
mask's pairs out changes the output's error by nothing (rel. RMSE 0.382 → 0.382). Before: the FP16 file's root was
the mask's `Where` ("a constant beyond float16's range … clamped to 1e+04", 3.4e38 off), the INT8 file's reason the
mask's fill "clipped" ("42.83% of them lie beyond — a calibration that did not see these values")."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from tests.cli_run import cpdebug

# found, not imported: the package imports rdkit and rxn-chem-utils, which `--no-deps` leaves out
pytestmark = [pytest.mark.long,  # an export, two conversions and two bisects with their interventions (~90 s CPU)
              pytest.mark.skipif(importlib.util.find_spec("rxnmapper") is None,
                                 reason="rxnmapper 0.4.3 (pip install --no-deps rxnmapper==0.4.3) ships the ALBERT")]
WHERE = "/albert/Where_1_output_0"  # the mask's fill, Where(mask, 0, finfo.min)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    import onnx
    from onnxconverter_common import float16
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from tests.trained.rxnmapper_albert import CALIB, REACTIONS, export, feeds

    d = tmp_path_factory.mktemp("rxn")
    src = export(d / "albert.onnx")
    (d / "h").mkdir()
    onnx.save(float16.convert_float_to_float16(onnx.load(src), keep_io_types=True), d / "h" / "model.onnx")

    class Reader(CalibrationDataReader):  # one reaction a sample, of its own length (no padding)
        def __init__(self):
            self.it = iter([feeds([r]) for r in CALIB])

        def get_next(self):
            return next(self.it, None)

    (d / "q").mkdir()
    quantize_static(str(src), str(d / "q" / "model.onnx"), Reader(), quant_format=QuantFormat.QDQ)
    np.savez(d / "judged.npz", **feeds(REACTIONS))
    return d


def _bisect(d, cand: str) -> dict:
    from tests.trained import rxnmapper_albert

    proc = cpdebug("bisect", "--onnx", d / "albert.onnx", "--inputs", d / "judged.npz", "-b", f"ort-cpu,ort@{d / cand}",
                   "--metric", f"{rxnmapper_albert.__file__}:mapping_metric", "--json", d / f"{cand}.json", "--quiet")
    assert proc.returncode in (0, 1, 4), proc.stdout[-3000:] + proc.stderr[-2000:]
    return json.loads((d / f"{cand}.json").read_text())


def test_the_fp16_files_clamped_mask_fill_is_no_root_cause(made):
    import onnxruntime as ort

    from tests.trained.rxnmapper_albert import mapping_metric

    feed = dict(np.load(made / "judged.npz"))
    ref, half = ({"attn": ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, feed)[0]}
                 for p in (made / "albert.onnx", made / "h" / "model.onnx"))
    assert mapping_metric(half, ref) == 1.0  # by hand, ONNX Runtime's own CPU float16: every atom kept
    report = _bisect(made, "h")
    cand = report["candidates"][0]
    root = report["root_cause"][cand]
    assert root["probe"] != WHERE and "beyond float16's range" not in root["hint"], root["hint"][:600]
    mask = next(r for r in report["results"][cand] if r["probe"] == WHERE)
    assert mask["status"] == "ok", mask  # before: diverged, max abs 3.4e38 (the fill held at -1e4)


def test_the_int8_files_mask_fill_is_no_clip(made):
    report = _bisect(made, "q")
    cand = report["candidates"][0]
    hint = report["root_cause"][cand]["hint"]
    assert report["outcome"] != "within_precision"  # 23 of 356 atoms move (by hand)
    assert "-3.4e+38" not in hint and "lie beyond" not in hint, hint[:600]  # before: the fill "clipped"
