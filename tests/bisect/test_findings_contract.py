"""The findings' contract (issue 108, item 2): the catalog's order and roles, and a finding's JSON as the report's
schema takes it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema

from cp_debug.bisect.findings.catalog import EXAMINERS
from cp_debug.bisect.findings.contract import Finding, Role

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "report.schema.json"


def test_the_catalog_places_the_cause_before_it_explains_it_and_reads_the_run_last():
    roles = [e.role for e in EXAMINERS]
    assert roles == sorted(roles, key=[Role.WHERE, Role.WHY, Role.RUN].index), roles
    assert len({e.fault for e in EXAMINERS}) == len(EXAMINERS)  # one examiner a fault class


def test_a_finding_without_a_number_is_null_in_the_report():
    """A runtime that refuses a file at its default level measured nothing there (NaN, ONNX Runtime 1.30 on an FP8
    file): the report's JSON holds null, which its schema takes, never the strict writer's 'nan'."""
    schema = json.loads(SCHEMA.read_text())["properties"]["findings"]
    found = [Finding("runtime", Role.RUN, None, "refused at its default level", math.nan).to_json(),
             Finding("near tie", Role.WHERE, "out", "decision flip", 5.36e-05).to_json()]
    assert found[0]["number"] is None and found[1]["number"] == 5.36e-05
    jsonschema.validate({"cand": found}, schema)
