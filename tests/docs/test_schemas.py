"""docs/schemas/: every report's JSON Schema is a valid schema, and reports the CLI writes validate against it —
bisect (a failing and a passing run), sweep, eval and fix on the tiny preset (issue 56)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_run import cpdebug

jsonschema = pytest.importorskip("jsonschema")

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
NAMES = ("report", "sweep", "eval", "fix")


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def validate(doc: dict, name: str) -> None:
    jsonschema.validate(doc, schema(name), cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("name", NAMES)
def test_each_schema_is_a_valid_draft_2020_12_schema(name):
    jsonschema.Draft202012Validator.check_schema(schema(name))


def test_the_bisect_schema_requires_the_design_contract_and_refuses_a_renamed_key():
    required = set(schema("report")["required"])
    assert required == {"schema", "reference", "candidates", "settings", "environment", "probes", "results",
                        "first_divergent", "root_cause"}
    with pytest.raises(jsonschema.ValidationError):
        validate({"schema": "cp_debug.report/1", "reference": "torch", "candidates": ["ort"], "settings": {},
                  "environment": {}, "probes": [], "results": {}, "first_divergent": {}, "rootcause": {}}, "report")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes")
    run = cpdebug("scenes", "--n", 2, "--preset", "tiny", "--out", out / "s")
    assert run.returncode == 0, run.stderr
    return out / "s"


@pytest.mark.slow
@pytest.mark.parametrize(("args", "code"), [
    (("--backends", "torch,ort-cpu-fp16", "--atol", "1e-4", "--rtol", "1e-4"), 1),  # a failing run: ◀ and ★ filled
    (("--backends", "torch,ort"), 0),
])
def test_bisect_reports_validate(tmp_path, args, code):
    run = cpdebug("bisect", "--preset", "tiny", *args, "--json", tmp_path / "r.json", "-q")
    assert run.returncode == code, run.stdout + run.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    validate(doc, "report")
    if code == 1:
        cand = doc["candidates"][0]
        assert doc["first_divergent"][cand] and doc["root_cause"][cand]["probe"] and doc["outcome"] == "diverged"


@pytest.mark.slow
def test_sweep_and_eval_reports_validate(scenes, tmp_path):
    out = tmp_path / "sweep"
    run = cpdebug("sweep", "--out", out, "--scenes", scenes, "--backends", "torch,ort-cpu-fp16", "--preset", "tiny",
                  "--level", "stage", "--bootstrap", 20, "-q", "--bisect-top", 1, "--tolerance-mode", "fixed")
    assert run.returncode in (0, 1, 4), run.stderr
    validate(json.loads((out / "sweep.json").read_text()), "sweep")
    for bisected in (out / "bisect").glob("*.json"):
        validate(json.loads(bisected.read_text()), "report")
    run = cpdebug("eval", "--preset", "tiny", "--backends", "torch,ort-cpu-fp16", "--scenes", scenes, "--json",
                  tmp_path / "e.json", "-q")
    assert run.returncode in (0, 4), run.stderr
    validate(json.loads((tmp_path / "e.json").read_text()), "eval")


@pytest.mark.slow
def test_fix_reports_validate(tmp_path):
    out = tmp_path / "fix"
    run = cpdebug("fix", "--preset", "tiny", "--backends", "torch,ort-cpu-fp16", "--tol", "0.05", "--scenes", 1,
                  "--bootstrap", 0, "--out", out, "--json", tmp_path / "fix_run.json", "-q")
    assert run.returncode == 0, run.stdout + run.stderr
    validate(json.loads((out / "fix.json").read_text()), "fix")
    validate(json.loads((tmp_path / "fix_run.json").read_text()), "fix")
