"""Local errors where the verdict reads them (`stages/local_deferred.py`, issue 118): an FP16 `--level all` lockstep
runs no local run while every probe is within its budget; a run where one ends up off gets every local error
caught up, its report the same as with every local run made as it went."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import cp_debug
from cp_debug.backends.ort.ort_runner import OrtRunner

FP16 = "ort-cpu-fp16"
LOCAL = ("local_max_abs", "local_rel_rmse", "local_status", "local_noise_ratio")


def _chain(scale_at: int | None = None, layers: int = 6) -> onnx.ModelProto:
    """x -> (Conv 3x3 -> Relu) × `layers` -> y, 8 channels on 16 × 16. `scale_at`: that conv's weights × 3e4 (its
    outputs past float16's 65504: inf in the FP16 candidate) and the next one's × 1e-4, as `planted.fp16_overflow`."""
    rng = np.random.default_rng(7)
    inits, nodes, x = [], [], "x"
    for k in range(layers):
        w = rng.normal(size=(8, 8, 3, 3)).astype(np.float32) * 0.25
        if scale_at is not None and k == scale_at:
            w *= 3e4
        if scale_at is not None and k == scale_at + 1:
            w *= 1e-4
        inits.append(helper.make_tensor(f"w{k}", TensorProto.FLOAT, w.shape, w.ravel()))
        nodes += [helper.make_node("Conv", [x, f"w{k}"], [f"c{k}"], pads=[1, 1, 1, 1], name=f"conv{k}"),
                  helper.make_node("Relu", [f"c{k}"], [f"r{k}"], name=f"relu{k}")]
        x = f"r{k}"
    nodes.append(helper.make_node("Identity", [x], ["y"], name="out"))
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _bisect(model, monkeypatch, put_off: bool) -> tuple[dict, int]:
    """The report of `ort,ort-cpu-fp16 --level all` and how many ONNX Runtime runs it made; `put_off` False: every
    local run made as the lockstep goes (as before issue 118's change)."""
    from cp_debug.bisect.stages import stage_lockstep

    x = np.random.default_rng(8).normal(size=(1, 8, 16, 16)).astype(np.float32)
    runs = []
    real = OrtRunner.infer

    def counted(self, feed, *a, **k):
        runs.append(self.spec.precision)
        return real(self, feed, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(OrtRunner, "infer", counted)
        if not put_off:
            m.setattr(stage_lockstep, "deferrable", lambda *a, **k: False)
        report = cp_debug.bisect(model, {"x": x}, f"ort,{FP16}", level="all").to_json()
    return report, len(runs)


def _same_but_time(a, b, path=""):
    """Every field equal, timings and memory aside."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), path
        for k in a:
            if k not in ("wall_s", "phases", "peak_memory", "seconds", "reference_store", "source"):
                _same_but_time(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), path
        for k, (p, q) in enumerate(zip(a, b)):
            _same_but_time(p, q, f"{path}[{k}]")
    else:
        assert a == b or (isinstance(a, float) and isinstance(b, float) and np.isclose(a, b, rtol=1e-9, atol=0)), \
            (path, a, b)


def test_a_run_within_precision_makes_no_local_run_and_says_so(monkeypatch):
    model = _chain()
    put, n_put = _bisect(model, monkeypatch, put_off=True)
    made, n_made = _bisect(model, monkeypatch, put_off=False)
    assert made["outcome"] == put["outcome"] == "within_precision"
    rows = {k: {r["probe"]: r for r in d["results"][FP16]} for k, d in (("put", put), ("made", made))}
    measured = [p for p, r in rows["made"].items() if r["local_max_abs"] is not None
                and r["local_max_abs"] != r["max_abs"]]  # a local run of its own (not the propagated values)
    assert len(measured) >= 5
    convs = [p for p in measured if p.startswith("c")]  # a ReLU's local values are the reference's rounded: no run
    assert n_put == n_made - len(convs), (n_put, n_made, convs)  # the convs' local runs were not made
    for p in measured:
        r = rows["put"][p]
        assert all(r[f] is None for f in LOCAL), (p, r)  # not measured: no value, never a 0
        assert "local error not measured" in (r["note"] or ""), p
    for p, r in rows["made"].items():  # everything else as measured with every local run
        mine = dict(rows["put"][p])
        if p in measured:
            mine.update({f: r[f] for f in LOCAL}, note=r["note"], local_expected_rel_rmse=r["local_expected_rel_rmse"])
        _same_but_time(mine, r, p)
    for key in ("first_divergent", "root_cause", "outcomes", "outcome_reasons", "findings", "decisions"):
        assert put[key] == made[key], key
    assert "local runs not made" in next(iter(put["settings"]["execution"].values()))


@pytest.mark.parametrize("scale_at", [1, 4])  # off early (little to catch up), off late (most of the stage)
def test_a_run_with_a_probe_off_catches_every_local_error_up(monkeypatch, scale_at):
    model = _chain(scale_at)
    put, _ = _bisect(model, monkeypatch, put_off=True)
    made, _ = _bisect(model, monkeypatch, put_off=False)
    assert made["outcome"] != "within_precision" and made["root_cause"][FP16] is not None
    assert "local errors (caught up)" in put["settings"]["phases"]  # put off, then caught up once c{scale_at} was off
    assert sum(r["local_max_abs"] is not None for r in made["results"][FP16]) >= 2 * 6 - 1
    _same_but_time(put, made)  # verdict, root cause, findings, every local error: the same report
