"""The command group a `cpdebug` process runs (`cli/app.py: command_group`) builds only the command asked for, and
says everything as the whole tree does (typer's, built from `app`): help pages, unknown commands with their
suggestion, bad options, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from cp_debug.cli.app import COMMANDS, command_group
from cp_debug.cli.main import app

CASES = [[], ["--help"], ["--version"], ["bisect", "--help"], ["serve", "--help"], ["report", "--help"], ["bisekt"],
         ["Bisect"], ["--bogus"], ["bisect", "--no-such-option"], ["sweep", "--n", "x1"], ["report"],
         ["serve", "--idle-minutes", "-1", "--status"], ["lint", "--onnx", "/nonexistent"]]


def _said(group, args: list[str]) -> tuple[object, str, str]:
    with CliRunner().isolation(env={"COLUMNS": "200"}) as (out, err, _):
        try:
            group.main(args=args, prog_name="cpdebug")
            code = 0
        except SystemExit as done:
            code = done.code
        sys.stdout.flush()
        sys.stderr.flush()
        return code, out.getvalue().decode(), err.getvalue().decode()


@pytest.fixture(scope="module")
def whole():
    return typer.main.get_command(app)


@pytest.mark.parametrize("args", CASES, ids=" ".join)
def test_the_lazy_group_says_what_the_whole_tree_says(whole, args):
    lazy = command_group()
    said = _said(lazy, args)
    assert said == _said(whole, args)
    assert said[0] in (0, 2) and (said[1] or said[2])
    built = set(lazy.commands._built)
    if args[:1] and args[0] in COMMANDS:
        assert built == {args[0]}  # the command asked for, no other
    elif args in ([], ["--help"]):
        assert built == set(COMMANDS)  # the page lists every command with its line
    else:
        assert built == set()


def test_the_lazy_group_has_every_command_in_the_tree_s_order(whole):
    lazy = command_group()
    assert list(lazy.commands) == list(whole.commands) == list(COMMANDS)
    assert lazy.list_commands(None) == whole.list_commands(None)
    assert lazy.commands._built == {}
    assert lazy.get_command(None, "nope") is None and lazy.get_command(None, "report").name == "report"


SCRIPT = """
import sys
sys.argv = ["cpdebug", *sys.argv[1:]]
from cp_debug.cli.main import main
code = None
try:
    main()
except SystemExit as done:
    code = done.code
print("LOADED", code, " ".join(sorted(m for m in sys.modules if m.endswith("_cmd"))))
"""


def test_a_command_s_process_imports_its_module_alone(tmp_path):
    env = {**os.environ, "CPDEBUG_SERVER": "off", "CPDEBUG_SERVER_SOCKET": str(tmp_path / "none.sock")}
    p = subprocess.run([sys.executable, "-c", SCRIPT, "serve", "--status", "--idle-minutes", "5"], env=env,
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == "LOADED 0 cp_debug.cli.serve_cmd"
