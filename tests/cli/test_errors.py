"""Errors are mapped once, around every command (cli/main.py): a CpDebugError is one line and its exit code, Ctrl-C
is "interrupted" and 130, a bug keeps its exception (and so its traceback), click's usage errors stay click's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import cp_debug.report.io as report_io
from cp_debug.cli import main as cli_main
from cp_debug.errors import BackendUnavailableError, BadInputError


def _run(monkeypatch, raised: BaseException | None, *args: str) -> None:
    """`cpdebug report run.json` (or `args`) as `main()` runs it, with the report reader raising `raised`."""
    def load_report(path):
        raise raised

    if raised is not None:
        monkeypatch.setattr(report_io, "load_report", load_report)
    monkeypatch.setattr(sys, "argv", ["cpdebug", *(args or ("report", "run.json"))])
    cli_main.main()


@pytest.mark.parametrize("err,code", [(BadInputError("run.json is not a report\nsecond line"), 2),
                                      (BackendUnavailableError("run.json is not a report"), 3)])
def test_a_cpdebug_error_is_one_line_and_its_exit_code(monkeypatch, capsys, err, code):
    monkeypatch.delenv("CPDEBUG_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_:
        _run(monkeypatch, err)
    assert exit_.value.code == code
    assert capsys.readouterr().err == "cpdebug: error: run.json is not a report\n"


def test_cpdebug_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("CPDEBUG_DEBUG", "1")
    with pytest.raises(BadInputError, match="not a report"):
        _run(monkeypatch, BadInputError("run.json is not a report"))


def test_an_internal_error_keeps_its_exception_and_traceback(monkeypatch, capsys):
    monkeypatch.delenv("CPDEBUG_DEBUG", raising=False)
    with pytest.raises(RuntimeError, match="a bug") as info:
        _run(monkeypatch, RuntimeError("a bug"))
    assert any(entry.name == "load_report" for entry in info.traceback)  # raised where it happened
    assert "cpdebug: error" not in capsys.readouterr().err


def test_ctrl_c_is_interrupted_and_exit_130(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        _run(monkeypatch, KeyboardInterrupt())
    assert exit_.value.code == 130
    assert capsys.readouterr().err == "cpdebug: interrupted\n"


def test_usage_errors_and_help_stay_clicks(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        _run(monkeypatch, None, "report")
    assert exit_.value.code == 2 and "Missing argument" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        _run(monkeypatch, None, "report", "--help")
    assert exit_.value.code == 0 and "Show a saved run's tables" in capsys.readouterr().out


def test_no_command_maps_errors_itself():
    cli = Path(cli_main.__file__).parent
    for module in sorted(cli.glob("*_cmd.py")):
        assert "handle_errors" not in module.read_text(), module.name
