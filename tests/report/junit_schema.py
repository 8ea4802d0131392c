"""Check a `--junit` file as CI systems read it: valid against Jenkins' junit-10.xsd (tests/data/junit), and read back
by junitparser (the reader GitLab-style tooling uses). Returns the cases as (name, classname, failure message or
None) per suite."""

from __future__ import annotations

from pathlib import Path

import pytest

XSD = Path(__file__).resolve().parents[1] / "data" / "junit" / "junit-10.xsd"


def read_junit(path: Path) -> dict[str, list[tuple[str, str, str | None]]]:
    etree = pytest.importorskip("lxml.etree")
    junitparser = pytest.importorskip("junitparser")
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    doc = etree.parse(str(path))
    assert schema.validate(doc), schema.error_log
    xml = junitparser.JUnitXml.fromfile(str(path))
    out: dict[str, list[tuple[str, str, str | None]]] = {}
    for suite in xml:
        cases = []
        for case in suite:
            failures = [r for r in case.result if isinstance(r, junitparser.Failure)]
            cases.append((case.name, case.classname, failures[0].message if failures else None))
        assert suite.tests == len(cases) and suite.failures == sum(1 for c in cases if c[2] is not None)
        out[suite.name] = cases
    return out
