"""`keep-fp32` and `fix` judged at the decision (issue 115, twelfth stop, item 2): rxnmapper's ALBERT in FP16 read
"The FP16 model passes as it is" (0.316× the outputs' budget) while one mapped atom moved — keep-fp32 took no
`--metric` and read no decision. It now takes bisect's `--metric NAME|FILE.py:FUNC` and, without one, reads the
Sigmoid / Softmax outputs at 0.5 / argmax as bisect does: a run that flips a decision fails, within budget or not; fix's
search (`--onnx`) reads the same decisions where no metric is given.

tests/bisect/flip_margin_models.py (rows 3 and 11 flip in FP16; by hand in tests/bisect/test_flip_margin.py):
`tie`'s probabilities within FP16's budget (rel. RMSE 2.3e-4) flip at a near tie; `fault`'s logits within it (0.63×)
flip under `--metric top1`. Each cure found is then checked by `bisect --keep-fp32`: within precision, no decision
flipped."""

from __future__ import annotations

import json

import numpy as np
import onnx

from tests.bisect.flip_margin_models import build, sample
from tests.cli_run import cpdebug


def _files(tmp_path, off: float, logits: bool):
    onnx.save(build(off, logits), tmp_path / "m.onnx")
    np.savez(tmp_path / "x.npz", x=sample(off))
    return tmp_path / "m.onnx", tmp_path / "x.npz"


def _cured(model, x, keep: list[str], *metric: str) -> None:
    proc = cpdebug("bisect", "--onnx", model, "--inputs", x, "-b", "ort-cpu,ort-cpu-fp16", "--keep-fp32",
                   ",".join(keep), *metric, "--quiet")
    assert proc.returncode == 0, proc.stdout[-2000:]


def test_keep_fp32_reads_the_softmax_decision_without_a_metric(tmp_path):
    model, x = _files(tmp_path, 0.0, False)
    proc = cpdebug("keep-fp32", "--onnx", model, "--inputs", x, "--search-nodes", "shift,unshift,softmax",
                   "--json", tmp_path / "k.json")
    doc = json.loads((tmp_path / "k.json").read_text())
    # before: exit 0, "The FP16 model passes as it is" (status not_needed, keep [])
    assert "passes as it is" not in proc.stdout, proc.stdout
    assert proc.returncode == 0 and doc["status"] == "found" and doc["keep"], doc["steps"]
    first = doc["steps"][0]
    assert first["decisions_flipped"] and "a near tie broken by rounding" in first["decisions_flipped"][0], first
    assert "the decisions it moves as it is: probs read at its argmax: 2 of 32" in proc.stdout, proc.stdout
    assert doc["decisions_flipped"] == [], doc  # the set found flips none
    _cured(model, x, doc["keep"])


def test_keep_fp32_takes_bisects_metric(tmp_path):
    model, x = _files(tmp_path, 2000.0, True)
    plain = cpdebug("keep-fp32", "--onnx", model, "--inputs", x, "--search-nodes", "shift,unshift")
    assert plain.returncode == 0 and "passes as it is" in plain.stdout  # no decision known on logits: none judged
    proc = cpdebug("keep-fp32", "--onnx", model, "--inputs", x, "--search-nodes", "shift,unshift", "--metric", "top1",
                   "--json", tmp_path / "k.json")
    doc = json.loads((tmp_path / "k.json").read_text())
    # before: exit 2, "No such option: --metric"
    assert proc.returncode == 0 and doc["keep"] == ["shift", "unshift"], proc.stdout[-2000:] + proc.stderr[-500:]
    assert "--metric top1" in proc.stdout and "no near tie" in doc["steps"][0]["decisions_flipped"][0], doc["steps"]
    _cured(model, x, doc["keep"], "--metric", "top1")
    bad = cpdebug("keep-fp32", "--onnx", model, "--inputs", x, "--metric", "top7")
    assert bad.returncode == 2 and "--metric 'top7'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_fix_reads_the_softmax_decision_without_a_metric(tmp_path):
    model, x = _files(tmp_path, 0.0, False)
    proc = cpdebug("fix", "--onnx", model, "--inputs", x, "-b", "ort-cpu-fp16", "--search-nodes",
                   "shift,unshift,softmax", "--out", tmp_path / "fx", "--json", tmp_path / "f.json")
    doc = json.loads((tmp_path / "f.json").read_text())
    # before: "nothing to fix: the plain ort-cpu-fp16 is within FP16's budget on every search sample", nothing kept
    assert proc.returncode == 0 and "nothing to fix" not in proc.stdout, proc.stdout[-3000:]
    assert "fail (a decision flipped)" in proc.stdout, proc.stdout[-3000:]
    keep = doc["search"]["keep"]
    assert keep, doc["search"]
    _cured(model, x, keep)
