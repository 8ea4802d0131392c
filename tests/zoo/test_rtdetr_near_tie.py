"""Issue 108, item 1: the causes ranked by their own error against their budget. An RT-DETR whose first divergent
probe is barely past FP16's budget (`decoder_input_proj.1`, a projection left in float16's subnormals) while its
encoder's TopK flips between near ties, every probe computed from it far beyond: the TopK is named as the decision
(its margin against float16's step), no layer blamed for rounding; the first divergent probe stays in the report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli_run import cpdebug
from tests.zoo import rtdetr_variants

pytestmark = [pytest.mark.slow, pytest.mark.long]  # 20-30 s each: run by .ci/run's second step

pytest.importorskip("transformers")


def test_a_topk_flip_after_a_first_divergent_at_noise_level_is_the_root_cause_named_as_a_decision(tmp_path):
    out = tmp_path / "r.json"
    cpdebug("bisect", "--torch", f"{Path(rtdetr_variants.__file__)}:build_rtdetr_hf_init", "-b",
            "torch,ort-cpu-fp16", "--json", out)
    report = json.loads(out.read_text())
    label = "ort-cpu-fp16"
    rows = {r["probe"]: r for r in report["results"][label]}
    root = report["root_cause"][label]
    first = report["first_divergent"][label]
    reason = report["outcome_reasons"][label]
    assert first is not None and rows[first]["status"] == "diverged"  # the first divergent: a fact of the report
    # the root cause's own error stands furthest beyond the budget of every probe's
    own = [r["local_noise_ratio"] for r in rows.values() if r["local_noise_ratio"] is not None]
    assert rows[root["probe"]]["local_noise_ratio"] == max(own) > 3, root
    hint = root["hint"]
    assert hint.startswith("decision flip at model: TopK"), hint  # named as the decision...
    assert "rounding introduced" not in hint and "underflow" not in hint and "keep this layer" not in hint
    gap, step = (float(v) for v in re.search(r"and the next is ([\d.e+-]+) .*rounding step there \(([\d.e+-]+)\)",
                                             hint).groups())
    assert 0 <= gap <= step < 0.01, hint  # ...with its margin within float16's step, the numbers shown
    assert "the root cause is a decision" in reason and "TopK" in reason, reason
    assert not reason.startswith(f"local fault at {root['probe']}"), reason  # the flip's error is no layer's fault
