"""The engine localises planted faults to the planted module, with real ONNX Runtime sessions."""

from __future__ import annotations

import re

from pathlib import Path

import numpy as np
import pytest
import torch

from cp_debug.backends.spec import BackendSpec
from cp_debug.backends.pytorch.torch_runner import TorchRunner
from cp_debug.bisect.engine import BisectEngine, BisectOptions
from cp_debug.bisect.subjects.loaders import torch_subject

PLANTED = Path(__file__).with_name("planted.py")


def run(func: str, backends: str, inputs=None, **opts):
    labels = backends.split(",")
    subject = torch_subject(f"{PLANTED}:{func}", inputs)
    engine = BisectEngine(subject, (labels[0], BackendSpec.parse(labels[0])),
                          [(lab, BackendSpec.parse(lab)) for lab in labels[1:]], BisectOptions(**opts))
    return engine.run()


@pytest.fixture(scope="module")
def bisected():
    """`run(func, backends)` once per pair in this module: the tests that read the same bisect share its report (none
    changes it). Settings other than the defaults go through `run` itself."""
    reports = {}

    def get(func: str, backends: str):
        if (func, backends) not in reports:
            reports[func, backends] = run(func, backends)
        return reports[func, backends]

    return get


def test_healthy_model_is_within_tolerance_on_ort():
    report = run("healthy", "torch,ort")
    cand = report.candidates[0]
    assert cand.first_divergent is None and cand.root_cause is None
    assert not report.any_diverged
    assert all(r.status in ("ok", "missing") for r in cand.results)
    # the comparison really happened: head output compared with a tiny but real difference
    out = next(r for r in cand.results if r.probe == "output0")
    assert out.diff is not None and out.diff.max_abs < 1e-4


def test_fp16_overflow_is_found_in_the_planted_conv(bisected):
    report = bisected("fp16_overflow", "torch,torch-cpu-fp16")
    cand = report.candidates[0]
    assert cand.first_divergent is not None and cand.first_divergent.startswith("body.2")
    assert cand.root_cause.probe == "body.2.0"
    assert "FP16 range" in cand.root_cause.hint
    assert cand.path[0] == "body.2" and cand.path[-1] == "body.2.0"
    r = next(r for r in cand.results if r.probe == "body.2.0")
    assert r.status == "inf" and r.diff.inf > 0 and r.diff.nan == 0  # Inf and no NaN: its own word
    assert cand.outcome.value == "diverged" and report.outcome.exit_code == 1


def test_frozen_branch_is_attributed_to_the_gate(tmp_path):
    # inputs whose mean is negative take the branch the tracer did not record
    x = -np.abs(np.random.default_rng(0).standard_normal((1, 8, 16, 16)).astype(np.float32)) - 3.0
    np.savez(tmp_path / "in.npz", x=x)
    report = run("frozen_branch", "torch,ort", inputs=tmp_path / "in.npz")
    cand = report.candidates[0]
    assert cand.root_cause.probe == "body.0"
    assert cand.first_divergent == "body.0"
    assert "frozen by the exporter" in cand.root_cause.hint
    assert any("TracerWarning" in w for w in report.warnings)


def test_a_frozen_branch_is_no_reason_where_both_backends_run_the_export():
    """rxnmapper's ALBERT through `--torch` (docs/trained-models.md, eleventh stop): transformers' masking_utils
    warns of a branch the tracer froze, and `-b ort-cpu,ort-cpu-fp16` blamed it for the FP16 run's flip — the
    reference runs the same export, the same branch. Said against PyTorch only (above)."""
    report = run("frozen_overflow", "ort-cpu,ort-cpu-fp16")
    cand = report.candidates[0]
    assert cand.root_cause is not None and cand.root_cause.probe == "body.0", cand.root_cause
    assert "frozen by the exporter" not in (cand.root_cause.hint or ""), cand.root_cause.hint
    assert any("TracerWarning" in w for w in report.warnings)  # the exporter's warning is still reported


def test_int8_hostile_layer_is_the_root_cause(bisected):
    report = bisected("int8_hostile", "torch,ort-cpu-int8")
    cand = report.candidates[0]
    assert cand.root_cause is not None
    assert cand.root_cause.probe.startswith("body.2"), cand.root_cause
    rc = next(r for r in cand.results if r.probe == cand.root_cause.probe)
    others = [r.local.rel_rmse for r in cand.results if r.local is not None and not r.probe.startswith("body.2")]
    assert rc.local.rel_rmse > 5 * max(others)
    # a weight outlier (per channel), no activation range at fault: the layer's advice is tried on its segment
    assert "verified: within precision with body.2" in cand.root_cause.hint, cand.root_cause.hint
    # issue 115: a cure offered holds at the outputs, and says so with the outputs' figures
    assert re.search(r"at the outputs: worst output [0-9.]+× → [0-9.]+× its budget, back within it",
                     cand.root_cause.hint), cand.root_cause.hint


def test_error_introduced_early_is_blamed_where_introduced_not_where_it_crosses():
    report = run("amplified", "torch,torch-cpu-fp16", tolerance_mode="fixed")
    cand = report.candidates[0]
    results = {r.probe: r for r in cand.results}
    assert results["body.1"].status == "ok"  # below the element-wise tolerance where it is introduced…
    assert cand.first_divergent == "body.2"  # …crossing it only after amplification
    assert cand.root_cause.probe == "body.1"
    assert results["body.1"].local.rel_rmse > 10 * results["body.2"].local.rel_rmse
    assert cand.outcome.value == "diverged"


def test_the_noise_model_flags_the_cancellation_where_it_happens():
    """Judged on relative RMS error, body.1's cancellation (FP16 keeps ~0.004 next to 8.0 around values of 0.01)
    is far beyond FP16's rounding at once: first divergent and root cause, a local fault (diverged, exit 1)."""
    report = run("amplified", "torch,torch-cpu-fp16")
    cand = report.candidates[0]
    results = {r.probe: r for r in cand.results}
    assert cand.first_divergent == "body.1" and cand.root_cause.probe == "body.1"
    assert results["body.1"].local_judgement.noise_ratio > 3 and results["body.0"].judgement.noise_ratio < 1
    assert cand.outcome.value == "diverged" and "local fault at body.1" in cand.outcome_reason
    assert report.outcome.exit_code == 1


def test_healthy_fp16_is_within_precision_and_every_planted_fault_is_not(bisected):
    healthy = run("healthy", "torch,torch-cpu-fp16").candidates[0]
    assert healthy.outcome.value == "within_precision", healthy.outcome_reason
    assert healthy.first_divergent is None
    for func, backends in (("fp16_overflow", "torch,torch-cpu-fp16"), ("int8_hostile", "torch,ort-cpu-int8")):
        cand = bisected(func, backends).candidates[0]
        assert cand.outcome.value == "diverged", (func, cand.outcome_reason)
        assert cand.root_cause.probe.startswith("body.2"), (func, cand.root_cause)


@pytest.mark.gpu
def test_a_cuda_reference_keeps_what_its_hooks_lent_in_memory_and_on_disk():
    """A torch-cuda reference's probes reach the store through one reused host buffer (TorchRunner.on_probe):
    what the store keeps, in memory or spilled, is each probe's own value, and the verdict is found."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    kept = {}
    for budget in (2048, 0):
        subject = torch_subject(f"{PLANTED}:fp16_overflow", None)
        engine = BisectEngine(subject, ("torch-cuda", BackendSpec.parse("torch-cuda")),
                              [("torch-cuda-fp16", BackendSpec.parse("torch-cuda-fp16"))],
                              BisectOptions(memory_budget_mb=budget))
        report = engine.run()
        assert report.candidates[0].root_cause.probe == "body.2.0"
        kept[budget] = {p: np.array(engine.reference_value(p)) for p in ("body.0", "body.1", "body.2", "body.3")}
        # the noise-floor run repeated the reference bit for bit (deterministic cuDNN), found on the device
        noise = engine.run_state.noise
        assert {p: noise[p].max_abs for p in kept[budget]} == {p: 0.0 for p in kept[budget]}
        assert noise["body.2"].ref_absmax == float(np.abs(kept[budget]["body.2"]).max())
        engine.close()
    st = torch_subject(f"{PLANTED}:fp16_overflow", None).stages[0]
    with TorchRunner(st.module, st.input_names, st.output_names, BackendSpec.parse("torch-cuda"),
                     probe_modules=list(kept[0])) as r:
        own = r.infer(subject.feed(0, {}))
    for budget, values in kept.items():
        for p, v in values.items():
            np.testing.assert_array_equal(v, own[p], err_msg=f"{p} at --memory-budget {budget}")
