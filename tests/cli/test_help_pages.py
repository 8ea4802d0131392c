"""Every help page (issue 56): options in titled panels, two examples that parse, the exit codes in one format, a
metavar that says what goes there, and rich markup that eats no bracket."""

from __future__ import annotations

import re
import shlex

import pytest
import typer
from typer.testing import CliRunner

from cp_debug.cli import _help
from cp_debug.cli.main import app

GROUP = typer.main.get_command(app)
NAMES = sorted(GROUP.commands)


def page(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_has_a_group_two_examples_and_exit_codes():
    assert set(_help.GROUP) == set(NAMES) == set(_help.EXAMPLES) == set(_help.CODES)
    root = page()
    for title in set(_help.GROUP.values()):
        assert f"─ {title} " in root


@pytest.mark.parametrize("name", NAMES)
def test_a_page_has_panels_examples_and_exit_codes_in_one_format(name):
    text = page(name)
    first, second = _help.EXAMPLES[name]
    flat = " ".join(text.split())
    assert "Examples:" in text and first in flat and second in flat
    line = flat[flat.index("Exit codes:"):]
    codes = [int(c) for c in re.findall(r"(?:: |; )(\d+) ", line.split(". ")[0])]
    assert codes == sorted(codes) and {0, 2, 70, 130, 141} <= set(codes), line
    assert not re.search(r"<(str|path|bool|int|float|list)", text), "a type shown instead of a metavar"


@pytest.mark.parametrize("name", NAMES)
def test_the_examples_parse(name):
    """Each example's options exist and take the values given (parsed by click, nothing run)."""
    command = GROUP.commands[name]
    for example in _help.EXAMPLES[name]:
        for part in example.split("&&"):
            argv = shlex.split(part)
            assert argv[:2] == ["cpdebug", name], part
            command.make_context(name, argv[2:])


def test_brackets_survive_rich_markup_and_backends_says_the_whole_grammar():
    bisect = " ".join(page("bisect").split())
    assert "'cp-debug[rerun]'" in bisect
    for word in ("@DIR", "@KIT", "trt-rtx", "framework[-device][-precision][@DIR|@KIT]"):
        assert word in bisect, word
    fix = " ".join(page("fix").split())
    assert "trt-fp16" not in fix.split("--backends", 1)[1].split("--", 1)[0]


def test_bisect_internals_sit_in_the_advanced_panel_last():
    text = page("bisect")
    panels = re.findall(r"╭─ (.+?) ─", text)
    assert panels[-1] == _help.ADVANCED
    advanced = text[text.index(f"─ {_help.ADVANCED} "):]
    for option in ("--lockstep-mode", "--device-budget", "--memory-budget"):
        assert option in advanced


def test_the_root_page_gives_every_exit_code_in_order():
    flat = " ".join(page().split())
    line = flat[flat.index("Exit codes:"):].split(". ")[0]
    from cp_debug.errors import ExitCode

    assert [int(c) for c in re.findall(r"(?:: |; )(\d+) ", line)] == sorted(int(c) for c in ExitCode)


@pytest.mark.parametrize("name", ["sweep", "eval"])
def test_a_deprecated_spelling_still_works_and_says_so_once(name, capsys):
    need = ["--out", "o"] if name == "sweep" else []  # sweep's one required option
    ctx = GROUP.commands[name].make_context(name, [*need, "--calib-scenes", "2"])
    assert ctx.params["calib_scenes"] == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--calib-scenes is deprecated" in err and "use --calib-n" in err
    ctx = GROUP.commands[name].make_context(name, [*need, "--calib-scenes=3"])
    assert ctx.params["calib_scenes"] == 3


def test_nothing_after_a_double_dash_is_renamed():
    assert _help.renamed("sweep", ["--", "--calib-scenes"]) == ["--", "--calib-scenes"]
    assert _help.renamed("quantize", ["--calib-scenes", "infos.pkl"]) == ["--calib-scenes", "infos.pkl"]


def test_lint_takes_the_pair_folder_as_onnx_dir_and_still_reads_onnx():
    ctx = GROUP.commands["lint"].make_context("lint", ["--onnx", "deploy"])
    assert str(ctx.params["onnx_dir"]) == "deploy"
