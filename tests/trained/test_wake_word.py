"""The layer that alone holds a decision's damage, not the first of the ranked that tips a near tie (issue 115:
"every broken candidate flagged with the layer that alone breaks its decision"): openwakeword's speech embedding
(tests/trained/wake_word.py) in the built-in INT8 loses a false "hey mycroft" of a synthetic voice (4 frames at
0.52–0.56 → 0.11–0.19). Without cp_debug, the first Conv alone quantized (`nodes_to_quantize`) takes all four down
(≈ 0.15: the whole of INT8's damage) — its trained filters are DC-free, fed mel features whose offset is ~8 —, where
`conv2d_16` (batch_normalization_16, ranked third by own error) alone moves none. The own-error ranking puts the first
Conv fourth; before, only the top three were run alone and `batch_normalization_16` (one frame tipped, 0.145× of the
candidate's 0.806×) was named "the first ranked layer that alone breaks them"; now the set search's pool is run alone
and the one carrying the most of the candidate's error is named, with its mechanism: its filters cancel (each sums to
~0), and INT8's rounding of them leaks the input's offset (`findings/quantized/cancel.py`)."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.long  # two quantizations and a bisect of a 68-probe CNN with its intervention (~60 s)
HERE = Path(__file__).resolve().parent


def _quantized(path: str, calib: np.ndarray, only: list[str] | None, out: Path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter({"input_1": c} for c in calib)

        def get_next(self):
            return next(self.it, None)

    quantize_static(path, str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8, nodes_to_quantize=only,
                    extra_options={"WeightSymmetric": True})
    return out


def test_the_layer_that_holds_the_wake_words_damage_is_named(tmp_path):
    import onnxruntime as ort

    try:
        metadata.distribution("openwakeword")
    except metadata.PackageNotFoundError:
        pytest.skip("openwakeword is not installed (pip install --no-deps openwakeword==0.4.0: its files only)")
    from tests.trained.wake_word import CALIB, FIRST_CONV, JUDGED, model_path, scores, windows

    clips, emb = windows(), model_path("embedding_model.onnx")

    def frames(path) -> np.ndarray:
        return scores(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
            None, {"input_1": clips[JUDGED]})[0])

    ref = frames(emb)
    assert (ref >= 0.5).all(), ref  # the detection judged
    # the right answer, without cp_debug: the first Conv alone in INT8 takes every frame down; the third ranked none
    alone = frames(_quantized(emb, np.stack([clips[i] for i in CALIB]), [FIRST_CONV], tmp_path / "first.onnx"))
    assert (alone < 0.5).all(), alone
    third = frames(_quantized(emb, np.stack([clips[i] for i in CALIB]), ["model/conv2d_16/Conv2D"],
                              tmp_path / "third.onnx"))
    assert (third >= 0.5).all(), third

    np.savez(tmp_path / "x.npz", input_1=clips[JUDGED])
    np.savez(tmp_path / "c.npz", input_1=np.concatenate([clips[i] for i in CALIB]))
    proc = cpdebug("bisect", "--onnx", emb, "--inputs", tmp_path / "x.npz", "--calib", tmp_path / "c.npz", "-b",
                   "ort-cpu,ort-cpu-int8", "--metric", f"{HERE / 'wake_word.py'}:mycroft_metric", "--json",
                   tmp_path / "r.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    cause = json.loads((tmp_path / "r.json").read_text())["root_cause"]["ort-cpu-int8"]
    assert cause["probe"] == f"{FIRST_CONV}:0", cause["hint"]
    found = cause["intervention"]
    assert found["alone_breaks"] == cause["probe"], found
    run = next(t for t in found["tried"] if t["alone"] and t["candidate"] == cause["probe"])
    others = [t for t in found["tried"] if t["alone"] and t["candidate"] != cause["probe"]]
    assert others and all(t["output_error_after"]["ratio"] < run["output_error_after"]["ratio"] for t in others)
    assert "of the ranked layers that alone break them, the one with the most" in cause["hint"], cause["hint"]
    # the mechanism (quantized/cancel.py): its 24 filters are DC-free, fed mel features whose mean is ~8
    assert "its weights cancel: 24 of 24 filters of Conv" in cause["hint"], cause["hint"]
    # one story (issue 115): the layer its run alone placed, no "the error accumulates" nor "no intervention" beside it
    assert "no single layer dominates" not in cause["hint"] and "accumulates" not in cause["hint"], cause["hint"]
    assert "placed by its run alone, confirmed by no restoration" in cause["hint"], cause["hint"]

    # the user's own per-channel file (`ort@DIR`): the same mechanism, read from the file's own levels and scales
    (tmp_path / "q").mkdir()
    _quantized(emb, np.stack([clips[i] for i in CALIB]), None, tmp_path / "q" / "model.onnx")
    label = f"ort@{tmp_path / 'q'}"
    proc = cpdebug("bisect", "--onnx", emb, "--inputs", tmp_path / "x.npz", "-b", f"ort-cpu,{label}", "--metric",
                   f"{HERE / 'wake_word.py'}:mycroft_metric", "--json", tmp_path / "u.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    mine = json.loads((tmp_path / "u.json").read_text())["root_cause"][label]
    assert mine["probe"] == f"{FIRST_CONV}:0", mine["hint"]
    assert "its weights cancel: 24 of 24 filters of Conv" in mine["hint"], mine["hint"]
    assert "the file's own INT8 rounding (its levels at its own scales)" in mine["hint"], mine["hint"]
