"""A cure that leaves the output worse is never offered (issue 115, item 1; bisect/cures/at_outputs.py): every rung
of the INT8 cure ladder that its segment passes is judged at the stage outputs too, against the uncured candidate's
own output error, and dropped — said as tried — where it is worse there.

tests/bisect/int8_requant_worse.py: the range rung (the stem's output re-quantized at the other channels' range, its
outlier channel saturating) is within INT8's budget on `body.0`'s segment and wrecks the output, which adds that
channel itself. Before, the hint offered it: "verified: within precision with 'conv2d' quantized at ±2.31 …; to
calibrate so, ONNX Runtime's quantize_static(..., TensorQuantOverrides …)". The right answer without cp_debug: the
same saturation applied in FP32 in torch (the stem's channel 0 clamped to the rung's range) moves the output by its
whole size.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.long  # an export and a dozen INT8 runs (~30 s on 2 cores)

MODEL = Path(__file__).with_name("int8_requant_worse.py")


def _saturated_in_fp32(amax: float) -> float:
    """The output's rel. RMS change in FP32 when the stem's output is clamped to ±amax (the rung's saturation)."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("int8_requant_worse", MODEL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net, (x,) = mod.build()
    with torch.no_grad():
        ref = net(x)
        s = net.stem(x).clamp(-amax, amax)
        out = net.head(net.body(s)) + s[:, :1] * 0.05
    return float(((out - ref).pow(2).mean() / ref.pow(2).mean()).sqrt())


def test_a_re_quantization_that_leaves_the_outputs_worse_is_not_offered(tmp_path):
    proc = cpdebug("bisect", "--torch", f"{MODEL}:build", "-b", "torch,ort-cpu-int8", "--level", "all",
                   "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode in (1, 4), proc.stdout[-3000:] + proc.stderr[-2000:]
    hint = json.loads((tmp_path / "r.json").read_text())["root_cause"]["ort-cpu-int8"]["hint"]
    rung = re.search(r"'conv2d' quantized at ±([\d.e+-]+) \(the largest \|x\| of the other channels[^)]*\): within "
                     r"precision on its segment but leaves the outputs worse \(worst output ([\d.e+-]+)× → "
                     r"([\d.e+-]+)× its budget", hint)
    assert rung is not None, hint
    amax, before, after = map(float, rung.groups())
    assert after > 5 * before, hint  # margins, not exact figures: AVX2 and AVX-512 alike
    assert "not offered" in hint and "TensorQuantOverrides" not in hint, hint  # its how-to is no advice
    assert not re.search(r"verified: within precision with 'conv2d' quantized", hint), hint
    assert _saturated_in_fp32(amax) > 0.3  # the rung's saturation wrecks the output in FP32 too
    # one story (issue 115): body.0's own fault (7.7× INT8's budget) is said with the outputs' figure (0.131× their
    # budget), and no intervention runs on outputs within their budget — before: "confirmed by no intervention: …
    # beyond the run's tolerance (worst output 0.131× its budget …)", an element-wise limit the run did not judge by
    report = json.loads((tmp_path / "r.json").read_text())
    reason = report["outcome_reasons"]["ort-cpu-int8"]
    assert "local fault at body.0" in reason, reason
    m = re.search(r"its outputs within their budget on this input \(([\d.e+-]+)×\), no decision flipped", reason)
    assert m is not None and float(m.group(1)) < 0.5, reason
    assert "intervention" not in report["root_cause"]["ort-cpu-int8"] and "run's tolerance" not in hint, hint


def test_a_hidden_local_fault_whose_declared_decision_holds_is_degraded_not_diverged(tmp_path):
    """Issue 115 (no false alarm at the application's decision): body.0's own fault (7.7× INT8's budget) with the
    outputs within their budget (0.131×) and a declared `--metric` that holds is degraded (exit 4), as the same
    fault with the outputs beyond and the decision held already was (basic-pitch's FP16). Before: diverged, exit 1 —
    torchfcpe's INT8 with the advised node left out (every frame's pitch kept) read as broken."""
    proc = cpdebug("bisect", "--torch", f"{MODEL}:build", "-b", "torch,ort-cpu-int8", "--metric",
                   f"{MODEL.with_name('coarse_metric.py')}:mean_sign", "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 4, proc.stdout[-3000:] + proc.stderr[-2000:]
    reason = json.loads((tmp_path / "r.json").read_text())["outcome_reasons"]["ort-cpu-int8"]
    assert "local fault at body.0" in reason and "the decision holds (--metric" in reason, reason
    assert re.search(r"its outputs within their budget on this input \([\d.e+-]+×\), not broken", reason), reason
    # the declared metric held is said: in the report's decisions (its name, each side's value, held) and its summary
    decision, = json.loads((tmp_path / "r.json").read_text())["decisions"]["ort-cpu-int8"]
    assert decision["rule"] == "metric" and decision["held"] is True and not decision["changed"], decision
    assert decision["reference"] == decision["candidate"] and decision["summary"].endswith("(held)"), decision
    assert "decision: --metric" in proc.stdout and "(held)" in proc.stdout, proc.stdout[-3000:]


def test_a_rung_nearer_but_not_back_at_the_outputs_is_said_as_a_step_not_the_cure():
    """Issue 115 (every cure offered holds at the output): a rung verified on its segment whose outputs come nearer
    but not back within their budget is said as a step toward the cure, with the outputs' figures."""
    from cp_debug.bisect.cures.at_outputs import held
    from cp_debug.bisect.cures.restore import OutputError

    before = OutputError(ratio=3.2, rel_rmse=0.4, passes=False, flips=2)
    text = held(before, OutputError(ratio=1.6, rel_rmse=0.2, passes=False, flips=1))
    assert text.startswith("at the outputs not back: worst output 3.2× → 1.6× its budget, 2 → 1 decision(s)")
    assert text.endswith("a step toward the cure, not the cure")
    assert held(before, OutputError(ratio=0.5, rel_rmse=0.05, passes=True)).endswith("back within it")


def test_outputs_within_their_rms_budget_yet_beyond_the_tolerance_say_which_check_failed():
    """Issue 115 (s9, item 2): an output fails the judge by its RMS budget or by elements beyond the tolerance
    (`cure_judge.passes`); where the ratio alone reads as back ("inf× → 0.266× its budget … not the cure" read as a
    contradiction), the words name the element-wise check with the judge's own numbers."""
    import math

    import numpy as np

    from cp_debug.bisect.cures.at_outputs import held
    from cp_debug.bisect.cures.restore import OutputError, _elementwise
    from cp_debug.compare.diff import TensorDiff, Tolerance

    ref = np.linspace(-1, 1, 4000, dtype=np.float32)
    test = ref.copy()
    test[:12] += np.float32(0.05)  # |ref| ≈ 1 there: beyond 0.02 + 0.02·|ref|; the rest exact
    tol = Tolerance(atol=2e-2, rtol=2e-2, max_share=1e-3)
    e = _elementwise(TensorDiff.from_arrays("logits", ref, test, tol), tol)
    assert (e.beyond, e.allowed, e.nonfinite) == (12, 4, 0) and abs(e.max_abs - 0.05) < 1e-6, e
    before = OutputError(math.inf, 1.0, passes=False)
    after = OutputError(0.266, 0.01, passes=False, elementwise=e)
    text = held(before, after)
    assert ("worst output inf× → 0.266× its RMS budget, yet 12 element(s) of logits beyond the tolerance "
            "|Δ| ≤ 0.02 + 0.02·|ref| (4 allowed; max |Δ| 0.05)") in text, text
    # the intervention's list of runs "beyond their budget" says it too; judged by --atol/--rtol its words name the
    # run's tolerance themselves
    assert after.short() == "0.266× (12 element(s) of logits beyond the tolerance)" and after.short(False) == "0.266×"
    # beyond the RMS budget, the ratio says which check fails: the words as they were
    assert held(before, OutputError(1.6, 0.2, passes=False, elementwise=e)).startswith(
        "at the outputs not back: worst output inf× → 1.6× its budget —")


def test_a_restoration_within_the_rms_budget_yet_not_back_says_which_check_fails():
    # swift-f0's FP16 (a 1.5 s glide, its pitch output 14.3x its budget in a few unvoiced frames): its first half
    # kept in FP32 reached 0.0288x and was not back; "no half of the graph restored together brings them back
    # (... 0.0288x ...)" read as a contradiction
    from cp_debug.bisect.cures import spread
    from cp_debug.bisect.cures.restore import OutputError

    assert OutputError(ratio=0.0288, rel_rmse=0.0009, passes=False).short() == "0.0288×, element-wise beyond"
    assert OutputError(ratio=0.0288, rel_rmse=0.0009, passes=True).short() == "0.0288×"
    assert OutputError(ratio=6.7, rel_rmse=1.1, passes=False).short() == "6.7×"
    # judged by the run's own tolerance (the outputs within their budget before): every ratio is within it, and
    # the words say that limit already (docs/reading-a-report.md's 0.22x)
    assert OutputError(ratio=0.22, rel_rmse=0.002, passes=False).short(budget=False) == "0.22×"
    assert spread.words([]) == ""


def test_a_restoration_judged_by_a_flipped_decision_says_the_decision_not_the_budget():
    """Issue 115 (a confusing line): torchfcpe's INT8 had its outputs within their budget (0.357×) and one decision
    flipped; the intervention said "leaves the outputs beyond their budget (worst output 0.357× its budget …)" and,
    where a node brought the frames back, "brings the outputs back within their budget (worst output 0.486× …)" —
    read as a contradiction. It is the decision that a restoration brings back, or leaves flipped."""
    from cp_debug.bisect.cures.restore import EXCLUDE, OutputError, Restoration
    from cp_debug.bisect.cures.intervened import Intervention
    from cp_debug.bisect.cures.set_search import Tried

    before = OutputError(ratio=0.486, rel_rmse=0.21, passes=True, flips=1, in_budget=True)
    cured = Tried((Restoration("layer5.sigmoid", 0, EXCLUDE, nodes=("Sigmoid_5",)),),
                  OutputError(ratio=0.445, rel_rmse=0.19, passes=True, flips=0, in_budget=True))
    left = Tried((Restoration("layer4.sigmoid", 0, EXCLUDE, nodes=("Sigmoid_4",)),),
                 OutputError(ratio=0.483, rel_rmse=0.2, passes=True, flips=1, in_budget=True))
    text = Intervention("layer4.sigmoid", "layer5.sigmoid", before, (left, cured), 0.0, 0).text()
    assert "layer5.sigmoid left out of INT8 brings the decisions back (worst output 0.486× its budget, 1 decision(s) " \
           "flipped before → 0.445×" in text, text
    text = Intervention("layer4.sigmoid", None, before, (left,), 0.0, 0).text()
    assert "restoring each of the proposed causes leaves a decision flipped (worst output 0.486×" in text, text
    beyond = OutputError(ratio=3.0, rel_rmse=0.9, passes=False, flips=1)  # beyond the budget: said so, as before
    still = Tried(left.restored, OutputError(ratio=2.0, rel_rmse=0.6, passes=False, flips=1))
    assert "leaves the outputs beyond their budget" in Intervention("layer4.sigmoid", None, beyond, (still,), 0.0,
                                                                     0).text()
    # one brings the outputs within their budget, the decision still moved: said so (fer's INT8 Pads left out,
    # 0.442×: "leaves the outputs beyond their budget" before)
    text = Intervention("layer4.sigmoid", None, beyond, (still, left), 0.0, 0).text()
    assert ("leaves a decision moved: layer4.sigmoid (1 node(s) left out of INT8) brings the outputs back within "
            "their budget (0.483×) and the decision still changes (worst output 3× its budget") in text, text
