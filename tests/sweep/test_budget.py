"""`--budget` on a sweep: one sweep of a planted frame (a deployed folder whose backbone saturates on the densest
frame only, so the other frames set the median it stands out from) beside a healthy FP16 lane, shared by the
tests. The budget holds for FP16 and breaks for the planted lane,
naming the broken limit with its figure; the sweep's JUnit validates against the schema CI systems read."""

from __future__ import annotations

import pytest

from cp_debug.data.frames import held_out
from cp_debug.eval.gates import budget_checks, read_budget
from cp_debug.models.centerpoint.presets import get_preset
from cp_debug.sweep.lanes import build_subject
from cp_debug.sweep.metrics import budget_figures
from cp_debug.sweep.records import SweepSettings
from cp_debug.sweep.report import write_all
from cp_debug.sweep.session import SweepOptions, run_sweep
from cp_debug.sweep.summary import junit_suite
from tests.report.junit_schema import read_junit
from tests.sweep.planted import occupied_pillars, write_faulty_deployment

pytest.importorskip("nuscenes.eval.detection.algo")
N = 4
BUDGET = """\
max_map_drop: 0.05
max_nds_drop: 0.05
max_ap_drop_per_class: 0.1
max_ap_drop_per_range: {0-50m: 0.1}
min_match_rate: 0.9
max_p95_centre_shift: 0.1
max_p95_yaw_change: 0.2
max_head_error: {quantile: 0.95, limits: {heatmap: 0.05, reg: 0.05, dim: 0.05}}
no_frame_diverged: true
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    cfg = get_preset("tiny")
    tmp = tmp_path_factory.mktemp("budget")
    occupied = {f.token: occupied_pillars(f.load(cfg).points, cfg) for f in held_out(N)}
    ranked = sorted(occupied.values(), reverse=True)
    faulty = write_faulty_deployment(build_subject(SweepSettings(("torch", "ort"), preset="tiny")), tmp / "deploy",
                                     (ranked[0] + ranked[1]) / 2)
    cand = f"ort@{faulty}"
    opts = SweepOptions(SweepSettings(("torch", cand, "ort-cpu-fp16"), preset="tiny"), tmp / "out", n=N,
                        bisect_top=0, bootstrap=10)
    outcome = run_sweep(opts)
    (tmp / "budget.yaml").write_text(BUDGET)
    budget = read_budget(tmp / "budget.yaml")
    figures = {f.candidate: f for f in budget_figures(outcome.results, outcome.ranked, outcome.metrics, opts.settings)}
    dense = set(sorted(occupied, key=occupied.get, reverse=True)[:1])
    return outcome, opts, budget, figures, cand, dense, tmp


@pytest.mark.slow
def test_budget_holds_on_the_healthy_fp16_lane(swept):
    _, _, budget, figures, _, _, _ = swept
    checks = budget_checks(budget, [figures["ort-cpu-fp16"]])
    assert {c.option.split("[")[0] for c in checks} == set(budget.keys)  # every limit measured
    assert not [c.text() for c in checks if c.broken]
    assert len(figures["ort-cpu-fp16"].head_errors["heatmap"]) == N


@pytest.mark.slow
def test_budget_breaks_on_the_planted_lane_naming_the_frames(swept):
    _, _, budget, figures, cand, dense, _ = swept
    broken = {c.option: c for c in budget_checks(budget, [figures[cand]]) if c.broken}
    assert "no_frame_diverged" in broken
    c = broken["no_frame_diverged"]
    assert c.value == 1 and all(t in c.text() for t in dense)
    assert c.text().startswith(f"no_frame_diverged 0: {cand} vs torch: frames diverged or failed of {N}")


def test_sweep_junit_validates_with_a_case_per_frame(swept):
    outcome, opts, budget, figures, cand, dense, tmp = swept
    from cp_debug.eval.gates import budget_doc
    from cp_debug.report.junit import write_junit

    checks = budget_checks(budget, list(figures.values()))
    doc = write_all(outcome, opts, html_report=False, budget=budget_doc(budget, checks))
    assert doc["budget"]["holds"] is False
    write_junit(tmp / "sweep.xml", [junit_suite(doc, [c.junit_case("cpdebug.budget") for c in checks])])
    cases = read_junit(tmp / "sweep.xml")["cpdebug.sweep"]
    frames = {name: msg for name, cls, msg in cases if cls == "cpdebug.sweep.torch"}
    assert set(frames) == {f.token for f in held_out(N)}
    assert {t for t, m in frames.items() if m} == dense
    assert all("diverged" in frames[t] and "layer-local at pts_backbone.blocks.1" in frames[t] for t in dense)
    budget_cases = [(n, m) for n, cls, m in cases if cls == "cpdebug.budget"]
    assert ("no_frame_diverged [ort-cpu-fp16]", None) in budget_cases
    assert any(n == f"no_frame_diverged [{cand}]" and m for n, m in budget_cases)
