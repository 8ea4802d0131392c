"""docs/schemas/: every report's JSON Schema is a valid schema, and reports the CLI writes validate against it (issue
56): tests/cli_run.py validates every report any test's run writes (bisect, sweep and its bisects, eval, fix), so
the sweep, eval and fix runs of their own that this file made are gone (issue 53); here, that the check bites."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_run import cpdebug, validate_written, written_reports

jsonschema = pytest.importorskip("jsonschema")

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
NAMES = ("report", "sweep", "eval", "fix", "generate")


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


def _report(tmp_path: Path, rel: str, doc: dict) -> None:
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).write_text(json.dumps(doc))


@pytest.mark.parametrize(("argv", "files"), [
    (["bisect", "--preset", "tiny", "--json", "r.json"], [("r.json", "report")]),
    (["--quiet", "eval", "--json=e.json"], [("e.json", "eval")]),
    (["fix", "--out", "f", "--json", "run.json"], [("run.json", "fix"), ("f/fix.json", "fix")]),
    (["sweep", "--out", "s"], [("s/sweep.json", "sweep"), ("s/bisect/frame-1.json", "report")]),
])
def test_every_cli_test_validates_the_reports_its_run_wrote(tmp_path, argv, files):
    """tests/cli_run.py validates each report a run of the suite writes (every bisect/sweep/eval/fix test is a
    schema test); here, that it finds each command's files and that a document breaking its schema fails it."""
    for rel, _ in files:
        _report(tmp_path, rel, {"schema": "not a report"})
    assert written_reports(argv, tmp_path) == [(tmp_path / rel, name) for rel, name in files]
    with pytest.raises(jsonschema.ValidationError):
        validate_written(argv, tmp_path)
    assert written_reports(["bisect", "--json", "absent.json"], tmp_path) == []


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_the_reports_a_failing_bisect_writes_validate(tmp_path):
    """A failing run (◀ and ★ filled) through tests/cli_run.py, which validates its --json on the way out."""
    run = cpdebug("bisect", "--preset", "tiny", "--backends", "torch,ort-cpu-fp16", "--atol", "1e-4", "--rtol", "1e-4",
                  "--json", tmp_path / "r.json", "-q")
    assert run.returncode == 1, run.stdout + run.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    validate(doc, "report")
    cand = doc["candidates"][0]
    assert doc["first_divergent"][cand] and doc["root_cause"][cand]["probe"] and doc["outcome"] == "diverged"
