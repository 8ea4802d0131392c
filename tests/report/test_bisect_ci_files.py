"""`cpdebug bisect` with --junit, --budget and --model-explorer (tiny preset, torch vs ort-cpu-fp16, one run of the
CLI in process shared by the tests): the JUnit XML validates against the schema CI systems read, the budget decides
the exit code and is in the JSON, and the Model Explorer files load in Model Explorer's own dataclasses and name nodes
its ONNX adapter makes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.cli_run import cpdebug as run_cli
from tests.report.junit_schema import read_junit

ROOT = Path(__file__).resolve().parents[2]


def cpdebug(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=ROOT)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bisect_ci")
    budget = tmp / "budget.yaml"
    # the heads' rel. RMSE within 5 % (FP16 gives ~0.3-2 %); the head's `rot` within 1e-4 (FP16 cannot: broken)
    budget.write_text("max_head_error:\n  quantile: 0.95\n  limits: {heatmap: 0.05, reg: 0.05, rot: 0.0001}\n"
                      "no_frame_diverged: true\n")
    proc = cpdebug("bisect", "--preset", "tiny", "--backends", "torch,ort-cpu-fp16", "-q", "--json", tmp / "r.json",
                   "--junit", tmp / "r.xml", "--budget", budget, "--model-explorer", tmp / "me")
    return proc, tmp


@pytest.mark.slow
def test_budget_decides_the_exit_naming_the_broken_limit(run):
    proc, tmp = run
    assert proc.returncode == 1, proc.stderr
    doc = json.loads((tmp / "r.json").read_text())
    assert doc["outcome"] == "within_precision"  # the run alone would exit 0: the budget made it 1
    broken = [c for c in doc["budget"]["checks"] if c["broken"]]
    assert [c["option"] for c in broken] == ["max_head_error[rot]"] and not doc["budget"]["holds"]
    line = [x for x in proc.stderr.splitlines() if "budget broken" in x]
    assert len(line) == 1 and "max_head_error[rot] 0.0001" in line[0] and "above the limit" in line[0]
    assert f"{broken[0]['value']:.4g}" in line[0]


def test_junit_validates_with_a_case_per_candidate_and_limit(run):
    _, tmp = run
    suites = read_junit(tmp / "r.xml")
    cases = suites["cpdebug.bisect"]
    assert cases[0][:2] == ("ort-cpu-fp16", "cpdebug.bisect.torch") and cases[0][2] is None  # within precision
    budget = {name: msg for name, cls, msg in cases[1:]}
    assert set(budget) == {"max_head_error[heatmap] [ort-cpu-fp16]", "max_head_error[reg] [ort-cpu-fp16]",
                           "max_head_error[rot] [ort-cpu-fp16]", "no_frame_diverged [ort-cpu-fp16]"}
    assert budget["max_head_error[rot] [ort-cpu-fp16]"].startswith("max_head_error[rot] 0.0001: ort-cpu-fp16 vs torch")
    assert sum(m is not None for m in budget.values()) == 1


def test_model_explorer_files_load_in_model_explorer(run):
    _, tmp = run
    node_data_builder = pytest.importorskip("model_explorer.node_data_builder")
    dacite = pytest.importorskip("dacite")
    onnx_adapter = pytest.importorskip("model_explorer_onnx.main")
    me = tmp / "me"
    index = json.loads((me / "index.json").read_text())
    assert [s["stage"] for s in index["stages"]] == ["pts_voxel_encoder", "pts_backbone_neck_head"]
    report = json.loads((tmp / "r.json").read_text())
    session_ids, session_names = [], []  # Model Explorer renames a repeated graph id and skips a repeated file name
    for stage in index["stages"]:
        files = stage["candidates"]["ort-cpu-fp16"]
        graphs = {}
        for side, path in (("reference", stage["reference"]), ("candidate", files["graph"])):
            converted = onnx_adapter.ONNXAdapter().convert(str(me / path), {})  # the ONNX adapter's own graphs
            main = converted["graphs"][0]
            graphs[side] = (main.id, {n.id for n in main.nodes})
            session_ids.append(main.id)
            session_names.append(Path(path).name)
        # the split-pane link: both files, each side's node data aimed at its file by name and keyed by its graph id
        url = files["url_data"]
        assert [m["url"] for m in url["models"]] == [str((me / stage["reference"]).resolve()),
                                                      str((me / files["graph"]).resolve())]
        assert url["nodeDataTargets"] == [Path(stage["reference"]).name, Path(files["graph"]).name]
        assert [list(json.loads(Path(p).read_text())) for p in url["nodeData"]] == [[graphs["reference"][0]],
                                                                                  [graphs["candidate"][0]]]
        assert [p["selectedGraphId"] for p in url["uiState"]["paneStates"]] == [graphs["reference"][0],
                                                                              graphs["candidate"][0]]
        assert len(graphs["candidate"][1]) > len(graphs["reference"][1])  # the FP16 graph it ran: its Casts added
        for side, data in (("reference", files["reference_data"]), ("candidate", files["candidate_data"])):
            gid, nodes = graphs[side]
            for metric, path in data.items():
                doc = json.loads((me / path).read_text())
                model = node_data_builder.ModelNodeData(graphsData={
                    k: dacite.from_dict(node_data_builder.GraphNodeData, v, config=dacite.Config(strict=True))
                    for k, v in doc.items()})
                theirs = json.loads(model.to_json_string())  # their writer gives our file back (plus its defaults)
                assert {g: {k: theirs[g][k] for k in v} for g, v in doc.items()} == doc
                results = model.graphsData[gid].results
                assert results and set(results) <= nodes, (metric, set(results) - nodes)
        probes = {p["name"] for p in report["probes"] if p["stage"] == stage["stage"]}
        rel = json.loads((me / files["candidate_data"]["rel_max"]).read_text())[graphs["candidate"][0]]["results"]
        assert len(rel) >= len(probes) // 2
        sync = json.loads((me / files["sync"]).read_text())["mappingEntries"]
        assert sync and all(e["leftNodeIds"][0] in graphs["reference"][1] and e["rightNodeIds"][0]
                            in graphs["candidate"][1] for e in sync)
    assert len(set(session_ids)) == len(session_ids) and len(set(session_names)) == len(session_names)


def test_a_budget_key_bisect_cannot_measure_is_refused_before_the_run(tmp_path):
    budget = tmp_path / "b.yaml"
    budget.write_text("max_map_drop: 0.01\nmax_p95_yaw_change: 0.1\n")
    proc = cpdebug("bisect", "--preset", "tiny", "--backends", "torch,ort-cpu-fp16", "--budget", budget,
                   "--junit", tmp_path / "x.xml")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "bisect cannot measure max_map_drop, max_p95_yaw_change" in proc.stderr
    assert not (tmp_path / "x.xml").exists()
    budget.write_text("max_map_drop: 0.01\nmax_mAP_dorp: 0.1\nspeed: fast\n")
    proc = cpdebug("sweep", "--out", tmp_path / "o", "--budget", budget)
    assert proc.returncode == 2 and "unknown key(s) max_mAP_dorp, speed" in proc.stderr
    assert not (tmp_path / "o").exists()
