"""A planted FP16 fault in TransFusion-L's decoder (a real .pth with AWML keys): `cpdebug bisect --checkpoint` names
the cross-attention, the QK^T logits beyond 65504 with their value, and a keep-fp32 cure verified on its segment."""

from __future__ import annotations

import pytest

from tests.recipes.transfusion.planted import ATTENTION, bisect_planted


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_cross_attention_logits_overflow_is_named_at_the_attention_with_a_verified_cure(tmp_path):
    doc = bisect_planted(tmp_path, "attention")
    root = doc["root_cause"]["ort-cpu-fp16"]
    assert root["probe"].startswith(ATTENTION), root
    assert doc["first_divergent"]["ort-cpu-fp16"].startswith(ATTENTION)
    hint = root["hint"]
    assert f"FP16 overflow at {ATTENTION}" in hint and "attention logits (QK^T)" in hint, hint
    assert "|x| = 1.02e+05 > 65504" in hint  # 640 x 640 / 4, the planted constant
    assert "verified: keeping" in hint and "cross_attn/attn/Softmax" in hint, hint
    before = [r for r in doc["results"]["ort-cpu-fp16"] if r["probe"].startswith("pts_backbone")]
    assert before and all(r["status"] == "ok" for r in before)  # nothing upstream is blamed
