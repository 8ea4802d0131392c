"""Issue 115, item 2: the reason is the mechanism the data shows (bisect/findings/constant_range.py).

tests/bisect/fp16_statistics.py: a BatchNormalization whose running variance (9.79e7) is beyond float16's range —
said as a statistic out of range at its node, with the keep set the intervention confirms at the outputs, not as
"FP16 rounding (local rel. error 0.11)"."""

from __future__ import annotations

import json

from tests.bisect.fp16_statistics import write
from tests.cli_run import cpdebug


def _diverged(tmp_path, model, inputs) -> dict:
    """`bisect --onnx MODEL --inputs INPUTS -b ort,ort-cpu-fp16`'s JSON report, its exit 1 (diverged) checked."""
    proc = cpdebug("bisect", "--onnx", model, "--inputs", inputs, "-b", "ort,ort-cpu-fp16", "--json",
                   tmp_path / "r.json", "--quiet")
    report = json.loads((tmp_path / "r.json").read_text())
    assert proc.returncode == 1, report["outcome_reasons"]
    return report


def test_a_running_variance_beyond_float16_is_said_as_a_statistic_out_of_range(tmp_path):
    report = _diverged(tmp_path, *write(tmp_path))
    cause = report["root_cause"]["ort-cpu-fp16"]
    assert cause["probe"] == "bn" and cause["confirmed"] is True, cause
    hint = cause["hint"]
    assert hint.startswith("a statistic beyond float16's range at BatchNormalization 'bn1': its running variance"), hint
    assert "9.79e+07" in hint and "rounding introduced" not in hint, hint
    assert cause["intervention"]["keep"] == ["bn1"], cause["intervention"]
    faults = [f["fault"] for f in report["findings"]["ort-cpu-fp16"]]
    assert "constant" in faults and "intervention" in faults, faults


def test_an_eps_flushed_before_the_log_is_named_at_its_producer_with_the_keep_set_that_cures_it(tmp_path):
    """tests/bisect/fp16_flush.py: Log(x²·1e-6 + 1e-10) in FP16 — the eps and a fifth of the powers flush to 0 before
    the Log; keeping the Log alone leaves the Infs (tried at the outputs), the producers with it cure them."""
    from tests.bisect.fp16_flush import write

    report = _diverged(tmp_path, *write(tmp_path))
    cause = report["root_cause"]["ort-cpu-fp16"]
    hint = cause["hint"]
    assert hint.startswith("float16 flushes to zero before the Log 'log': its input's producer Add 'add_eps' adds "
                           "eps 1e-10"), hint
    assert "no FP32 value in the segment leaves" not in hint, hint
    assert "verified at the outputs: keeping power, add_eps, log in FP32 brings them back" in hint, hint
    tried = cause["intervention"]["tried"]
    log_alone = next(t for t in tried if t["candidate"] == cause["probe"])
    assert not log_alone["back"], tried  # the Log alone reads the flushed zeros
