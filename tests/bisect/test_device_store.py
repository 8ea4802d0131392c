"""The reference store's device tier (bisect/store.py) and the device path of a bisect: the reference's probes kept
as torch tensors, an ONNX Runtime candidate read through `infer_device` and compared where they lie
(`compare/device_diff.py`). On this CPU machine the tier holds torch CPU tensors (`device_budget_mb`), the same code
a CUDA reference runs; the report's figures must be the host path's."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.engine import BisectEngine, BisectOptions
from cp_debug.bisect.store import TensorStore


def test_device_tier_spills_to_host_past_its_budget_and_copies_out_on_get():
    s = TensorStore(1 << 20)
    s.enable_device(torch.device("cpu"), 64)  # room for 16 float32s
    lent = torch.arange(10, dtype=torch.float32)
    assert s.put_device("a", lent)
    lent += 100  # the runner's buffer changes after the call: the tier kept its own copy
    assert not s.put_device("b", torch.ones(10))  # 80 bytes more would pass the budget: the caller keeps it on the host
    s.put("b", np.ones(10, np.float32))
    assert "a" in s and "b" in s and len(s) == 2 and s.on_device == 40 and s.device_value("b") is None
    np.testing.assert_array_equal(s.get("a"), np.arange(10, dtype=np.float32))
    assert s.nbytes("a") == 40 and s.nbytes("b") == 40
    s.put("a", np.zeros(3, np.float32))  # a value put again leaves the tier
    assert s.device_value("a") is None and s.on_device == 0 and s.peak_on_device == 40
    s.close()
    assert len(s) == 0


@pytest.fixture(scope="module")
def subject():
    """The tiny preset's subject, read by every bisect of this file (each test's engines always shared theirs)."""
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    return centerpoint_subject("tiny", random_weights=True, trace_side=64)


@pytest.fixture(scope="module")
def reports(subject):
    out = {}
    for mb in (0, 1024):  # 0: every probe on the host (numpy); 1024: the device tier, CPU tensors
        engine = BisectEngine(subject, ("torch", BackendSpec.parse("torch")),
                              [("ort-cpu-fp16", BackendSpec.parse("ort-cpu-fp16"))],
                              BisectOptions(level="block", device_budget_mb=mb))
        out[mb] = engine.run()
    return out


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow  # two tiny-preset bisects, noise floor and local errors: about 30 s on two shared cores
def test_the_device_path_gives_the_host_paths_report(reports):
    host, dev = reports[0], reports[1024]
    store = dev.settings["reference_store"]
    assert store["device"] == "cpu" and store["peak_on_device_bytes"] > 0
    assert store["peak_in_memory_bytes"] < host.settings["reference_store"]["peak_in_memory_bytes"] / 4
    h, d = host.candidates[0], dev.candidates[0]
    assert (h.outcome, h.first_divergent) == (d.outcome, d.first_divergent)
    compared = 0
    for a, b in zip(h.results, d.results, strict=True):
        assert (a.probe, a.status) == (b.probe, b.status)
        if a.diff is None:
            continue
        compared += 1
        for x, y in ((a.diff, b.diff), (a.local, b.local)):
            if x is None:
                assert y is None
                continue
            # maxima and counts exactly (max_rel: the host kernel divides by fastmath's reciprocal, within an
            # ulp); float64 sums up to their summation order
            assert (x.max_abs, x.share_beyond) == (y.max_abs, y.share_beyond)
            assert y.max_rel == pytest.approx(x.max_rel, rel=3e-7)
            assert y.rel_rmse == pytest.approx(x.rel_rmse, rel=1e-12, abs=1e-15)
    assert compared >= 15
    assert json.dumps(host.plots, sort_keys=True) == json.dumps(dev.plots, sort_keys=True)
    # both paths ran the local segments side by side, a few sessions for many segments, with the same values
    for report in (dev, host):
        for stage in report.settings["backends"]["ort-cpu-fp16"].values():
            n, k = stage["local_error_segments"], stage["local_error_sessions"]
            assert (k < n) if n > 1 else (k == n), (n, k)


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow  # three tiny-preset bisects of ORT stages (one of them read by the run-ahead test too)
def test_an_onnx_runtime_reference_read_through_io_binding_gives_the_host_paths_report(ort_runs):
    """An ORT reference's stages run whole (`lockstep=False`; on CUDA `placement.device_whole` takes this path
    for ORT pairs) with its probes read through `infer_device` straight into the device tier, the noise floor and
    the candidate's probes and local errors compared there: the same report as every value on the host."""
    out = {(mb, lockstep): ort_runs[mb, lockstep, True] for mb, lockstep in ((0, False), (1024, False), (0, True))}
    # on the CPU an ORT pair keeps the lockstep: FP16 values cross its cuts in float16
    assert not any(run.device_whole for run in out.values())
    # a stage's feed goes to the device once a backend: the reference's two runs and its input probes read the same
    # tensors, as the candidate's run and its input probes do (the feed of the first stage is both's: 4 copies of
    # it, 3 and 2 of others' before); the host path copies nothing in
    dev_run = out[1024, False]
    assert dev_run.copies_in and dev_run.copies_in[0] <= 2 and dev_run.noise_feed_copies_in == 0, \
        (dev_run.copies_in, dev_run.noise_feed_copies_in)
    assert out[0, False].copies_in == []
    out = {key: run.report for key, run in out.items()}
    host, dev, locked = out[0, False], out[1024, False], out[0, True]
    # the rows the lockstep lists, whole stages list too: a probe the ONNX graph lacks would be reported missing
    # with the lockstep's note, not left out (at the block level the tiny preset has none since the container
    # modules without a tensor of their own stopped being probes; tests/kit/test_trt_kit_trtexec.py holds a missing
    # row of a fused layer)
    assert [(r.probe, r.status, r.note) for r in locked.candidates[0].results if r.status == "missing"] == \
        [(r.probe, r.status, r.note) for r in dev.candidates[0].results if r.status == "missing"]
    assert [r.probe for r in locked.candidates[0].results] == [r.probe for r in dev.candidates[0].results]
    assert dev.settings["reference_store"]["peak_on_device_bytes"] > 0
    assert host.settings["reference_store"].get("peak_on_device_bytes", 0) == 0
    assert set(dev.settings["execution"].values()) == {"whole stage, probes exposed"}
    h, d = host.candidates[0], dev.candidates[0]
    assert (h.outcome, h.first_divergent, h.root_cause) == (d.outcome, d.first_divergent, d.root_cause)
    compared = 0
    for a, b in zip(h.results, d.results, strict=True):
        assert (a.probe, a.status) == (b.probe, b.status)
        for x, y in ((a.diff, b.diff), (a.local, b.local)):
            if x is None:
                assert y is None
                continue
            compared += 1
            assert (x.max_abs, x.share_beyond) == (y.max_abs, y.share_beyond)
            assert y.max_rel == pytest.approx(x.max_rel, rel=3e-7)
            assert y.rel_rmse == pytest.approx(x.rel_rmse, rel=1e-12, abs=1e-15)
    assert compared >= 20


def _without_times(report) -> dict:
    """A report's JSON without what a clock or the machine's free memory sets (each candidate's wall seconds, the
    reference store's budgets); a copy: the report itself is left as it was."""
    doc = copy.deepcopy(report.to_json())
    doc.pop("wall_s")
    doc["settings"].pop("peak_memory")
    doc["settings"].pop("phases")
    store = doc["settings"]["reference_store"]
    store.pop("budget_mb")
    store.pop("device_budget_mb", None)  # a share of the free GPU memory at the start
    return doc


@dataclass
class Run:
    report: Any
    threads: list[str]  # the threads the candidate's stage runs went ahead on (`Ahead._run`, spied), in order
    device_whole: bool  # `placement.device_whole` for the candidate, after the run
    copies_in: list[int]  # how many times each host array went to the device tier (`placement.to_device`), most first
    noise_feed_copies_in: int  # how many of those copies the reference's noise runs made of its stages' feeds


def _spied_runs(subject, ref: str, cand: str, configs: dict) -> dict:
    """key -> Run: the bisect of (ref, cand) on `subject` at the block level with each configuration's options."""
    import collections
    import threading

    from cp_debug.bisect.stages import ahead, placement, stage_whole

    threads: list[str] = []
    copied: list[np.ndarray] = []  # held: no two of them share an id
    made, to_device = ahead.Ahead._run, placement.to_device
    noise_run, in_noise, here = stage_whole._noise_run, [], threading.local()  # in_noise: a noise run's copies

    def noise_spied(*args, **kwargs):
        here.noise = True  # on the engine's thread: a candidate's copies on its helper thread meanwhile are its own
        try:
            return noise_run(*args, **kwargs)
        finally:
            here.noise = False

    def spied(self, state, feed):
        threads.append(threading.current_thread().name)
        return made(self, state, feed)

    def copy_in(value, device):
        if isinstance(value, np.ndarray):
            copied.append(value)
            if getattr(here, "noise", False):
                in_noise.append(value)
        return to_device(value, device)

    out = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ahead.Ahead, "_run", spied)
        patch.setattr(placement, "to_device", copy_in)
        patch.setattr(stage_whole, "to_device", copy_in)
        patch.setattr(stage_whole, "_noise_run", noise_spied)
        for key, options in configs.items():
            threads.clear()
            copied.clear()
            in_noise.clear()
            engine = BisectEngine(subject, (ref, BackendSpec.parse(ref)), [(cand, BackendSpec.parse(cand))],
                                  BisectOptions(level="block", **options))
            report = engine.run()
            counts = sorted(collections.Counter(id(a) for a in copied).values(), reverse=True)
            fed = {id(a) for feed in engine.run_state.ref_feeds.values() for a in feed.values()}
            out[key] = Run(report, list(threads), placement.device_whole(engine.run_state, BackendSpec.parse(cand)),
                           counts, sum(id(a) in fed for a in in_noise))
    return out


@pytest.fixture(scope="module")
def ort_runs(subject):
    """The ORT-referenced bisects of this file, (device_budget_mb, lockstep, overlap) -> Run: the IO binding test reads
    the three with overlap (BisectOptions' default), the run-ahead test (1024, False) with and without it."""
    keys = ((0, False, True), (1024, False, True), (0, True, True), (1024, False, False))
    return _spied_runs(subject, "ort", "ort-cpu-fp16",
                       {k: {"device_budget_mb": k[0], "lockstep": k[1], "overlap": k[2]} for k in keys})


def _ahead_gives_the_serial_report(runs: dict, ref: str, cand: str, min_runs: int = 2) -> None:
    """`runs`: overlap (False, True) -> Run of the same bisect otherwise."""
    docs = {}
    for overlap in (False, True):
        docs[overlap] = _without_times(runs[overlap].report)
        threads = runs[overlap].threads
        beside = [stage.pop("ran_beside_reference", False)
                  for stage in docs[overlap]["settings"]["backends"][cand].values()]
        assert beside and all(beside) == overlap and any(beside) == overlap, beside  # said in the report
        # every stage's run (and each refinement's) went ahead on the helper thread, none without overlap
        assert (len(threads) >= min_runs and all(t.startswith("cpdebug-ahead") for t in threads)) if overlap \
            else not threads
    a, b = (json.dumps(docs[k], sort_keys=True, indent=0).splitlines() for k in (False, True))
    assert a == b, (ref, [(x, y) for x, y in zip(a, b) if x != y][:5])
    rows = docs[True]["results"][cand]
    assert sum(r["local_rel_rmse"] is not None for r in rows) >= 10, ref  # local errors measured ahead, and equal


def _ahead_pairs(subject, pairs, options: dict, min_runs: int = 2) -> None:
    for ref, cand in pairs:
        runs = _spied_runs(subject, ref, cand, {overlap: {**options, "overlap": overlap} for overlap in (False, True)})
        _ahead_gives_the_serial_report(runs, ref, cand, min_runs)


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow  # three tiny-preset bisects (a fourth shared with the IO binding test): about 15 s on two cores
def test_a_candidate_run_ahead_of_the_reference_gives_the_serial_report(subject, ort_runs):
    """With the reference's probes on the device tier, an ONNX Runtime candidate prepares, runs and measures its local
    errors on helper threads while the reference runs (`stages/ahead.py`): the report is the serial one, value for
    value, for an ONNX Runtime reference read through IO binding and for a torch reference streaming its probes."""
    _ahead_gives_the_serial_report({overlap: ort_runs[1024, False, overlap] for overlap in (False, True)},
                                   "ort", "ort-cpu-fp16")
    # the torch reference: a tolerance no FP16 value meets, so the candidate diverges and the refinement's re-runs go
    # ahead too (3 runs) — what a healthy torch-referenced run does ahead (stages, local errors), and more
    _ahead_pairs(subject, [("torch", "ort-cpu-fp16")],
                 {"lockstep": False, "device_budget_mb": 1024, "atol": 1e-7, "rtol": 0.0, "tolerance_mode": "fixed"},
                 min_runs=3)


@pytest.mark.gpu
@pytest.mark.needs("cuda", "onnxruntime-gpu")
def test_a_candidate_run_ahead_on_cuda_gives_the_serial_report():
    """The same on CUDA, where it is the default: an ORT pair (`device_whole`) and a torch reference, each candidate's
    FP16 session made and run beside the reference's runs on its own CUDA stream."""
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    _ahead_pairs(centerpoint_subject("demo", random_weights=True, trace_side=64),
                 [("ort-cuda", "ort-cuda-fp16"), ("torch-cuda", "ort-cuda-fp16")], {})


@pytest.mark.slow  # one tiny-preset stage: a few seconds
def test_an_error_on_the_engines_thread_stops_the_candidate_ahead_and_is_the_one_raised(monkeypatch, subject):
    """The reference fails after its first run (its noise run raises, injected): the candidate's helpers are stopped
    and joined (its local errors give up before measuring anything), no thread is left behind, and the engine's own
    error is the one the caller sees."""
    import threading

    from cp_debug.bisect.stages import stage_whole

    def failing(*args, **kwargs):
        raise RuntimeError("the reference's noise run failed")

    monkeypatch.setattr(stage_whole, "_noise_run", failing)
    engine = BisectEngine(subject, ("torch", BackendSpec.parse("torch")),
                          [("ort-cpu-fp16", BackendSpec.parse("ort-cpu-fp16"))],
                          BisectOptions(level="block", lockstep=False, device_budget_mb=1024))
    with pytest.raises(RuntimeError, match="noise run failed"):
        engine.run()
    engine.close()
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("cpdebug-ahead", "cpdebug-local"))]
