"""A planted FP16 fault in TransFusion-L's backbone (a real .pth with AWML keys, FP32 unchanged): `cpdebug bisect
--checkpoint` names the block by its number with the overflowing conv, takes the segment on to where the values are
back in range and verifies the cure there; the decoder after it is not blamed."""

from __future__ import annotations

import pytest

from tests.recipes.transfusion.planted import BACKBONE, bisect_planted


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_backbone_overflow_is_named_at_its_block_and_the_cure_verified_where_values_are_back_in_range(tmp_path):
    doc = bisect_planted(tmp_path, "backbone")
    root = doc["root_cause"]["ort-cpu-fp16"]
    assert root["probe"].startswith(f"{BACKBONE}."), root
    hint = root["hint"]
    assert f"FP16 overflow at {BACKBONE}." in hint and "/pts_backbone/blocks.1/blocks.1.0/Conv" in hint, hint
    assert "> 65504" in hint and "the segment is taken on to pts_backbone.blocks.1." in hint, hint
    assert "verified: keeping" in hint and "blocks.1.2/Relu" in hint and "blocks.1.3/Conv" in hint, hint
    (decision,) = doc["decisions"]["ort-cpu-fp16"]
    assert decision["changed"] and "the decoder ran on the reference's proposals" in decision["summary"]
