"""Errors are mapped once, around every command (cli/main.py): a CpDebugError is one line and its exit code, Ctrl-C
is "interrupted" and 130, a bug is one line, exit 70 and its traceback in a file (all of it with CPDEBUG_DEBUG=1),
click's usage errors stay click's."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import cp_debug
import cp_debug.report.io as report_io
from cp_debug.cli import main as cli_main
from cp_debug.errors import BackendUnavailableError, BadInputError, ExitCode


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


INTERNAL_LINE = re.compile(r"cpdebug: internal error: RuntimeError: a bug — a bug of cp_debug; the traceback is in "
                           r"(\S+cpdebug-internal-\S+\.txt) \(CPDEBUG_DEBUG=1 prints it\): please report it")


def _traceback_file(stderr: str) -> Path:
    """The one line an internal error prints, checked, and the traceback file it names (read, then removed)."""
    assert len(stderr.splitlines()) == 1, stderr
    match = INTERNAL_LINE.fullmatch(stderr.strip())
    assert match, stderr
    path = Path(match.group(1))
    assert path.is_file()
    return path


def test_an_internal_error_is_one_line_exit_70_and_its_traceback_kept(monkeypatch, tmp_path):
    """Through typer's CliRunner, in process: a RuntimeError planted in the report reader."""
    from typer.testing import CliRunner

    def load_report(path):
        raise RuntimeError("a bug\nsecond line")

    monkeypatch.delenv("CPDEBUG_DEBUG", raising=False)
    monkeypatch.setattr(report_io, "load_report", load_report)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    tempfile.tempdir = None  # read TMPDIR again
    try:
        result = CliRunner().invoke(cli_main.app, ["report", "run.json"])
    finally:
        tempfile.tempdir = None
    assert result.exit_code == ExitCode.INTERNAL == 70
    assert result.stdout == ""
    path = _traceback_file(result.stderr)
    assert path.parent == tmp_path
    text = path.read_text()
    assert text.startswith(f"cp_debug {cp_debug.__version__}, Python {platform.python_version()}")  # for the report
    assert "in load_report" in text and "RuntimeError: a bug\nsecond line" in text  # raised where it happened


def test_an_internal_error_in_a_fresh_process(tmp_path):
    """`cpdebug report run.json` as `main()` runs it, in its own process, a RuntimeError planted in the reader: exit
    70, one line; with CPDEBUG_DEBUG=1 the exception and its whole traceback, as Python prints them."""
    script = ("import sys, cp_debug.report.io as io\n"
              "def load_report(path):\n    raise RuntimeError('a bug')\n"
              "io.load_report = load_report\n"
              "from cp_debug.cli.main import main\n"
              "sys.argv = ['cpdebug', 'report', 'run.json']\nmain()\n")
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "CPDEBUG_DEBUG"}
    env.update(PYTHONPATH=str(root), TMPDIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 70 and proc.stdout == "", proc.stderr
    path = _traceback_file(proc.stderr)
    assert path.parent == tmp_path and "in load_report\nRuntimeError: a bug" in path.read_text()
    assert "argv: ['cpdebug', 'report', 'run.json']" in path.read_text()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**env, "CPDEBUG_DEBUG": "1"})
    assert proc.returncode == 1  # Python's own exit for an uncaught exception
    assert proc.stderr.startswith("Traceback (most recent call last):")
    assert "in load_report" in proc.stderr and proc.stderr.strip().endswith("RuntimeError: a bug")
    assert "internal error" not in proc.stderr


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



def test_a_library_cp_debugs_install_requires_missing_is_one_line_exit_3_and_any_other_import_a_bug(capsys):
    import importlib

    from cp_debug.cli.common.errors import handle_errors, missing_requirement

    with pytest.raises(ModuleNotFoundError) as raised:
        importlib.import_module("onnx_graphsurgeon_not_here")  # a missing module, raised as Python raises it
    assert missing_requirement(raised.value) is None  # no requirement of cp_debug: a bug line (exit 70), as before

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.delenv("CPDEBUG_DEBUG", raising=False)
    try:
        with pytest.raises(SystemExit) as exited, handle_errors():
            raise ModuleNotFoundError("No module named 'onnx_graphsurgeon'", name="onnx_graphsurgeon")
    finally:
        monkeypatch.undo()
    err = capsys.readouterr().err
    assert exited.value.code == 3, err
    assert err.startswith("cpdebug: error: cp_debug needs onnx-graphsurgeon, which is not installed") and \
        "pip install 'onnx-graphsurgeon>=0.5'" in err and len(err.strip().splitlines()) == 1
