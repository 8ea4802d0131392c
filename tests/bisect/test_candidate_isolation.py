"""Several candidates in one run get exactly what each gets alone, and `--memory-budget 0` (every reference
tensor on disk) gives the same report as the default budget: nothing is shared between candidates, and no
spilled reference tensor stands in for another (the spill-file collision this guards against gave wrong
verdicts at AWML scale)."""

from __future__ import annotations

import json

import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.long  # four whole bisects (48 s of a worker): .ci/run's second step, not the README's command

CANDIDATES = ("ort-cpu-fp16", "ort-cpu-int8")
# Everything a row says about its numbers and its verdict (timings excluded: they are the only field that
# may differ between two honest runs).
ROW_FIELDS = ("max_abs", "mean_abs", "max_rel", "rmse", "cosine", "snr_db", "nan", "inf", "local_max_abs",
              "amplification", "status", "rel_rmse", "share_beyond", "ref_absmax", "test_absmax", "ref_shape",
              "test_shape", "local_rel_rmse", "local_status", "note")


def _bisect(tmp_path, name: str, backends: str, *extra: str) -> dict:
    out = tmp_path / f"{name}.json"
    # the tiny preset: the same stages, modules and candidates as the demo, a sixteenth of its cells
    proc = cpdebug("bisect", "--preset", "tiny", "--random-weights", "--backends", backends, "--json", out, "--quiet",
                   *extra)
    assert proc.returncode in (0, 1, 4), proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("isolation")
    multi = "torch," + ",".join(CANDIDATES)
    return {
        "multi": _bisect(tmp, "multi", multi),
        "multi_disk": _bisect(tmp, "multi_disk", multi, "--memory-budget", "0"),
        **{c: _bisect(tmp, c, f"torch,{c}") for c in CANDIDATES},
    }


def _rows(report: dict, cand: str) -> dict[str, dict]:
    return {r["probe"]: {k: r.get(k) for k in ROW_FIELDS} for r in report["results"][cand]}


def _verdict(report: dict, cand: str) -> tuple:
    return (report["first_divergent"][cand], report["root_cause"][cand], report["paths"][cand],
            report["precision"][cand], report["outputs_within_tolerance"][cand])


@pytest.mark.slow
@pytest.mark.parametrize("cand", CANDIDATES)
def test_each_candidate_of_a_multi_candidate_run_gets_its_single_run_results(runs, cand):
    single, multi = _rows(runs[cand], cand), _rows(runs["multi"], cand)
    assert single, "the single-candidate run compared no probe"
    # The multi run may descend into more modules (another candidate's path), never fewer of this one's.
    missing = set(single) - set(multi)
    assert not missing, f"probes of the single run absent from the multi run: {sorted(missing)[:5]}"
    differing = {p: (single[p], multi[p]) for p in single if single[p] != multi[p]}
    assert not differing, f"{len(differing)} probe(s) differ, e.g. {next(iter(differing.items()))}"
    assert _verdict(runs[cand], cand) == _verdict(runs["multi"], cand)
    # both candidates really differ from torch (FP16 within its precision, INT8 beyond it: either way not zero)
    assert any(row["max_abs"] for row in multi.values())


@pytest.mark.slow
def test_memory_budget_zero_gives_the_same_report_probe_for_probe(runs):
    default, disk = runs["multi"], runs["multi_disk"]
    assert [p["name"] for p in default["probes"]] == [p["name"] for p in disk["probes"]]
    for cand in CANDIDATES:
        assert _rows(default, cand) == _rows(disk, cand)
        assert _verdict(default, cand) == _verdict(disk, cand)
    assert default["settings"]["noise"] == disk["settings"]["noise"]
    assert disk["settings"]["reference_store"]["peak_in_memory_bytes"] == 0
    assert disk["settings"]["reference_store"]["spilled_bytes"] > 0  # the run really went through the disk
