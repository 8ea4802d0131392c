from __future__ import annotations

import base64
import json

from typer.testing import CliRunner

from cp_debug.cli.main import app
from cp_debug.files import write_json
from tests.report.sample import PLANTED


def test_report_command_renders_a_saved_run(report, tmp_path):
    run = write_json(tmp_path / "run.json", report)
    out = tmp_path / "out"
    out.mkdir()
    r = CliRunner().invoke(app, ["report", str(run), "--html", str(out / "r.html"), "--csv", str(out / "r.csv"),
                                 "--json", str(out / "again.json")], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert PLANTED in r.output and "◀ first divergent" in r.output
    html = (out / "r.html").read_text()
    assert html.count("data:image/png;base64,") >= 2
    assert base64.b64decode(html.split("data:image/png;base64,")[1].split('"')[0])[:4] == b"\x89PNG"
    assert (out / "r.csv").read_text().startswith("candidate,index,probe,op_type")
    assert json.loads((out / "again.json").read_text())["results"] == report.to_json()["results"]


def test_report_command_on_a_bad_file_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "run.json"
    bad.write_text('{"schema": "something/else"}')
    r = CliRunner().invoke(app, ["report", str(bad)])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert lines == [f"cpdebug: error: {bad} is not a cp_debug report: schema is 'something/else', expected "
                     "'cp_debug.report/1'"]
    r = CliRunner().invoke(app, ["report", str(tmp_path / "missing.json")])
    assert r.exit_code == 2 and "report file not found" in r.output
