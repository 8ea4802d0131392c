"""`compare/massive.py` on the residual stream of the stored massive-channel Mistral (tests/data/llm/mistral_inner):
channel 5 at 250 found, and the rest's error, which the whole tensor's rel. RMS error hides, measured."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cp_debug.compare import massive

FP32 = Path(__file__).resolve().parents[1] / "data" / "llm" / "mistral_inner" / "fp32" / "model.onnx"


def _embeddings() -> np.ndarray:
    """The residual stream entering layer 0 on the corpus prompt: the builder's FP32 file's embedding rows."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(FP32))
    emb = next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == "model.embed_tokens.weight")
    return emb[[17, 101, 42, 7, 199, 64, 3, 250]][None].astype(np.float32)


def test_the_massive_channel_is_found_and_the_rest_judged_alone():
    ref = _embeddings()
    assert massive.massive_channels(ref).tolist() == [5]
    test = ref.copy()
    test[..., 6:] += 0.25  # an error as large as the rest, which channel 5 hides in the whole
    rd, words = massive.rest_diff("h", ref, test)
    assert rd.rel_rmse > 0.5 and "channel(s) 5 massive" in words
    whole = float(np.sqrt(np.mean((test - ref) ** 2)) / np.sqrt(np.mean(ref ** 2)))
    assert whole < 0.01  # what the tensor's rel. RMS error says


def test_no_massive_channel_in_an_ordinary_tensor():
    ref = _embeddings()
    ref[..., 5] = 0.3
    assert massive.massive_channels(ref) is None
    assert massive.rest_diff("h", ref, ref + 0.01) is None
    assert massive.massive_channels(np.ones((4, 8), np.float32)) is None  # too few channels
