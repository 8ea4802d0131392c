"""The tool-file corpus (tests/data/tool_files, issue 107 item 5) is intact: every case's files are there and
load, the tools' versions are recorded, the sample inputs fit each file, and what plain ONNX Runtime made of
each file when cases.json was written still holds (it refuses the files it refused, with the same first line;
it runs the others, finite or not as recorded, about as far from the FP32 output as recorded).

This is no test of cp_debug's verdicts on the corpus: those are other tests' (README.md there). The reference
is ORT's run of the FP32 export of the same variant (equal to the PyTorch module's within 1e-6, checked for the
CNN here), so torch and transformers are not needed but for that one check.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import pytest

ROOT = Path(__file__).resolve().parent / "tool_files"
sys.path.insert(0, str(ROOT / "stages"))
import facts  # noqa: E402  (the corpus's own helpers: what answers.py measured with)

DOC = json.loads((ROOT / "cases.json").read_text())
MADE = [c for c in DOC["cases"] if "skipped" not in c and "error" not in c]
FP32 = {"bert": "optimum-export/model.onnx", "cnn": "torch-export/model.onnx"}


def test_the_corpus_is_whole_and_small():
    assert len(MADE) >= 40 and not [c["id"] for c in DOC["cases"] if "error" in c]
    assert all(c["skipped"] for c in DOC["cases"] if "skipped" in c)  # each skip says why
    tools = {c["tool"] for c in MADE}
    assert {"optimum-export", "torch-export", "torch-dynamo", "ort-quantize-dynamic", "optimum-ortquantizer-dynamic",
            "ort-quantize-static-qdq", "ort-quantize-static-qoperator", "modelopt-int8", "modelopt-fp8",
            "polygraphy-fp16", "onnxconverter-fp16", "onnxconverter-fp16-keepio", "onnxslim", "onnxsim"} <= tools
    assert sum(c["bytes"] for c in MADE) < 12e6


@cache
def reference(model: str, variant: str) -> np.ndarray:
    r = facts.ort_run(ROOT / model / variant / FP32[model], ROOT / f"{model}_inputs.npz", False)
    return r["output"]


@pytest.mark.parametrize("case", MADE, ids=[c["id"] for c in MADE])
def test_a_case_is_as_recorded(case):
    files = [ROOT / f for f in case["files"]]
    assert all(f.is_file() for f in files) and sum(f.stat().st_size for f in files) == case["bytes"]
    proto = onnx.load(str(ROOT / case["file"]))  # external data (a dynamo export's .data) loads beside it
    assert case["tool_version"] and case["versions"]["import onnx"] and case["versions"]["import onnxruntime"]
    assert case["call"] and case["expected"]["outcome"] in ("within_precision", "degraded", "diverged", "refused")
    inputs = facts.file_inputs(proto)
    assert inputs == case["file_inputs"]
    assert facts.non_finite_initializers(proto) == case["file_non_finite_initializers"]  # ModelOpt's inf FP8 scale
    sample = np.load(ROOT / case["inputs"])
    for i in inputs:  # every input of the file has its array, of a shape the file takes
        a = sample[i["name"]]
        dims = i["shape"]  # an int is fixed (0: unknown), a str is named (dynamic)
        assert a.ndim == len(dims) and all(isinstance(d, str) or d in (0, n) for n, d in zip(a.shape, dims))
    if "calib" in case:
        assert set(np.load(ROOT / case["calib"]).files) >= {i["name"] for i in inputs}
    for key, opt in (("optimization_off", False), ("optimization_default", True)):
        want, got = case["ort"][key], facts.ort_run(ROOT / case["file"], ROOT / case["inputs"], opt)
        assert (got["accepts"], got.get("runs", False)) == (want["accepts"], want["runs"]), got["error"]
        if not want["runs"]:
            assert got["error"] == want["error"]
            continue
        cmp = facts.compare(got["output"], reference(case["model"], case["variant"]))
        assert cmp["finite"] == want["finite"] and cmp["non_finite_count"] == want["non_finite_count"]
        if want["finite"]:
            assert cmp["rel_rms"] == pytest.approx(want["rel_rms"], rel=0.05, abs=1e-6)


@pytest.mark.parametrize("model, variant", [("cnn", "healthy"), ("cnn", "planted"), ("cnn", "outlier"),
                                            ("bert", "healthy"), ("bert", "planted")])
def test_the_module_is_its_export(model, variant):
    """models.py's module on the stored weights is what the tools were given (optimum exported BERT under
    transformers 4.57 in its venv; the suite's transformers builds the same module)."""
    sys.path.insert(0, str(ROOT))
    import models
    import torch
    module, inputs = models.build(model, variant)
    with torch.no_grad():
        out = module(*inputs).numpy()
    np.testing.assert_allclose(reference(model, variant), out, rtol=1e-5, atol=1e-5)
    names = models.BERT_INPUTS if model == "bert" else models.CNN_INPUTS
    assert np.load(ROOT / f"{model}_inputs.npz").files == list(names)
