"""A module and the child whose output it returns (a Sequential and its last layer) read one ONNX tensor: its local
error is one segment's, cut and run once for both probes (`local_error.segment_errors`), and both rows carry it."""

from __future__ import annotations

import pytest

from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.engine import BisectEngine, BisectOptions


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow  # one tiny-preset bisect at --level all: a few seconds on two cores
def test_probes_of_one_tensor_share_one_segment_and_its_local_error():
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    subject = centerpoint_subject("tiny", random_weights=True, trace_side=64)
    cand = "ort-cpu-fp16"
    report = BisectEngine(subject, ("torch", BackendSpec.parse("torch")), [(cand, BackendSpec.parse(cand))],
                          BisectOptions(level="all", lockstep=False, device_budget_mb=1024)).run()
    doc = report.to_json()
    tensor = {p["name"]: (p["stage"], p["onnx_tensor"]) for p in doc["probes"] if p.get("onnx_tensor")}
    rows = {r["probe"]: r for r in doc["results"][cand]}
    shared: dict[tuple, list[str]] = {}
    for name, key in tensor.items():
        if name in rows and rows[name]["local_max_abs"] is not None:
            shared.setdefault(key, []).append(name)
    twins = [names for names in shared.values() if len(names) > 1]
    assert twins, "the tiny preset at --level all has a module and its last child on one tensor"
    fields = ("local_max_abs", "local_rel_rmse", "local_status")
    for names in twins:
        assert len({tuple(rows[n][f] for f in fields) for n in names}) == 1, names
    # one segment a tensor: the stage's count is that of its distinct tensors with a local value
    for stage, settings in doc["settings"]["backends"][cand].items():
        measured = {key for key in shared if key[0] == stage}
        assert settings["local_error_segments"] == len(measured), (stage, settings, len(measured))
