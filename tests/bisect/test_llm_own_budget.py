"""A weight-only segment's own budget by the matmuls it holds (compare/weight_only.own_units), end to end: the builder's
files bisected at `--level block`, whose segments each hold a layer's MatMulNBits (3 to 11) with no probe between."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug

LLM = Path(__file__).resolve().parents[1] / "data" / "llm"


@pytest.mark.long
@pytest.mark.parametrize("model, code", [("gemma2", 0), ("qwen3_massive", 1)])
def test_block_level_segments_judged_by_their_matmuls(tmp_path, model, code):
    """Gemma 2's healthy INT4 file at `--level block`: layer 0's segment (5 MatMulNBits, its post-branch norms
    handing on the branch's whole error) errs 2.75 units, within √5 + 1 (it was a local fault beyond the fixed 2,
    exit 1); the massive-channel Qwen3's is still a local fault at its logits (lm_head alone, 3.3 units)."""
    np.savez(tmp_path / "prompt.npz", input_ids=np.array([[17, 101, 42, 7, 199, 64, 3, 250]]))
    res = cpdebug("bisect", "--onnx", LLM / model / "fp32/model.onnx", "-b", f"ort,ort@{LLM / model / 'int4'}",
                  "--inputs", tmp_path / "prompt.npz", "--level", "block")
    said = " ".join((res.stdout + res.stderr).replace("│", " ").split())
    assert res.returncode == code, said
    assert ("within precision" in said) == (code == 0)
    if code:
        assert "local fault at logits" in said
