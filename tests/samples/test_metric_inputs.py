"""A `--metric` that sees the inputs (issue 115; cp_debug/samples/tasks.py, `TaskMetric.sees_inputs`): a metric function
naming a parameter `inputs` gets the sample's inputs by name, as it gets the outputs — for bisect, sweep and eval alike.
An MLM's decision is at its masked positions, which only its input ids hold (g2p-id's BERT, tests/trained/g2pid.py's
`reading_metric`); here tests/samples/threshold_model.py's `kept_of_asked` keeps the scores the input asks for (score k
where feature k is positive).

By hand (plain ONNX Runtime, FP32): each sample's value from its own inputs; two of the six samples keep a score that is
not asked (s4: 3 of 4 kept asked, s5: 1 of 2), so `kept`'s and `kept_of_asked`'s values differ there. Before, the
function was called with three arguments and raised (`inputs` None): "threshold_model.py:58 in kept_of_asked: TypeError:
'NoneType' object is not subscriptable (your model's code raised in the --metric …)"."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cli_run import cpdebug
from tests.samples import threshold_model

pytestmark = pytest.mark.long  # an eval, a sweep and a bisect of a 3-node graph on 6 samples (~15 s)

METRIC = f"{threshold_model.__file__}:kept_of_asked"


def _by_hand(path, samples) -> dict[str, tuple[float, float]]:
    """Each sample's (kept_of_asked, kept) on the reference's FP32 scores."""
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = {}
    for f in sorted(samples.glob("*.npz")):
        x = np.load(f)["x"]
        scores = s.run(None, {"x": x})[0]
        out[f.stem] = ((scores[0][x[0, :4] > 0] > 0.5).sum(), (scores > 0.5).sum())
    return out


def test_a_metric_naming_inputs_gets_each_samples_inputs_in_eval_sweep_and_bisect(tmp_path):
    from cp_debug.samples.tasks import task_metric

    path = threshold_model.write(tmp_path)
    samples = tmp_path / "samples"
    hand = _by_hand(path, samples)
    assert sum(a != k for a, k in hand.values()) >= 2  # the inputs change the decision's value
    assert task_metric(METRIC).sees_inputs and not task_metric(f"{threshold_model.__file__}:kept").sees_inputs

    proc = cpdebug("eval", "--onnx", path, "--inputs", samples, "-b", "ort-cpu,ort-cpu-fp16", "--metric", METRIC,
                   "--json", tmp_path / "e.json", "--quiet")
    assert proc.returncode in (0, 1), proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["metrics"]["ort-cpu"]["metric"]["mean"] == pytest.approx(np.mean([a for a, _ in hand.values()]))
    changed = {c["sample"]: c["reference"] for c in doc["verdicts"]["ort-cpu-fp16"]["changed"]}
    assert sorted(changed) == list(threshold_model.FLIPPED), changed  # score 0, asked there, flips
    assert all(v == hand[s][0] for s, v in changed.items()), (changed, hand)

    proc = cpdebug("sweep", "--onnx", path, "--inputs", samples, "--out", tmp_path / "s", "--bisect-top", "0",
                   "--metric", METRIC, "--quiet")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    frames = json.loads((tmp_path / "s" / "sweep.json").read_text())["frames"]
    for f in frames:
        d, = f["decisions"]["ort-cpu-fp16"]
        assert d["reference"] == hand[f["token"]][0], (f["token"], d, hand)
        assert d["changed"] == (f["token"] in threshold_model.FLIPPED), (f["token"], d)

    flipped = threshold_model.FLIPPED[0]
    proc = cpdebug("bisect", "--onnx", path, "--inputs", samples / f"{flipped}.npz", "-b", "ort-cpu,ort-cpu-fp16",
                   "--metric", METRIC, "--json", tmp_path / "b.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    cand = json.loads((tmp_path / "b.json").read_text())["candidates"][0]
    d = next(d for d in json.loads((tmp_path / "b.json").read_text())["decisions"][cand] if d["rule"] == "metric")
    assert d["reference"] == hand[flipped][0] and d["candidate"] == hand[flipped][0] - 1, (d, hand[flipped])
