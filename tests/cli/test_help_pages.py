"""Every help page (issue 56): options in titled panels, two examples that parse, the exit codes in one format, a
metavar that says what goes there, and rich markup that eats no bracket."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cp_debug.cli.common import help as _help
from cp_debug.cli.common.options import ADVANCED
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
    flat = " ".join(text.split())
    assert "Examples:" in text and all(example in flat for example in _help.EXAMPLES[name])
    if name in ("bisect", "sweep"):  # issue 117: a --torch / --onnx example beside the CenterPoint ones
        assert any("--torch" in e or "--onnx" in e for e in _help.EXAMPLES[name])
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
    assert panels[-1] == ADVANCED
    advanced = text[text.index(f"─ {ADVANCED} "):]
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
    assert _help.renamed("bisect", ["--calib-scenes", "infos.pkl"]) == ["--calib-scenes", "infos.pkl"]


def test_lint_takes_the_pair_folder_as_onnx_dir_and_still_reads_onnx():
    ctx = GROUP.commands["lint"].make_context("lint", ["--onnx", "deploy"])
    assert str(ctx.params["onnx_dir"]) == "deploy"


# -- one name per idea (issue 72 item 7): docs/terms.md's option table is the source ----------------------------------
TERMS = Path(__file__).resolve().parents[2] / "docs" / "terms.md"


def _option_table() -> list[tuple[str, list[str]]]:
    """(canonical option, its old spellings) of each row of terms.md's "Option names" table (tests/cli/
    test_option_terms.py reads the rest of each row)."""
    from tests.cli.terms_table import table

    return [(row.option, list(row.old)) for row in table(TERMS.read_text())]


def _options(command) -> set[str]:
    return {o for p in command.params for o in [*p.opts, *p.secondary_opts]} | {"--help"}


def _mentions(text: str) -> set[str]:
    """The options a help text names, less those of another command in a quoted command line (`cpdebug fix
    --check DIR`, `ray start --head`)."""
    text = re.sub(r"`[^`-][^`]*`", "", " ".join((text or "").split()))
    return set(re.findall(r"(?<![\w\[-])--[a-z][a-z0-9-]*", text))


def test_terms_names_every_deprecated_spelling_and_no_page_shows_one():
    table = dict(_option_table())
    assert {"--backends", "--atol", "--rtol", "--calib", "--calib-n", "--html", "--n"} <= set(table)
    old = {spelling for spellings in table.values() for spelling in spellings}
    for (name, flag), entry in _help.DEPRECATED.items():
        new = entry[0].split(" ")[0]  # "--convtranspose per-tensor": the option, then the value the old flag meant
        assert flag in old, f"{name} {flag}: not in docs/terms.md's option table"
        assert new == "" or new in table, f"{name} {flag} -> {new}: not a canonical name"
        assert new == "" or new in _options(GROUP.commands[name]), (name, new)
    assert old <= {flag for _, flag in _help.DEPRECATED}, "an old spelling in docs/terms.md that no command takes"
    for (name, flag), entry in _help.DEPRECATED.items():  # hidden: the page shows the new name alone
        if len(entry) == 2:  # (fix --scenes PATH and sweep --html FILE stay: only a count / no value is the old one)
            assert flag not in _options(GROUP.commands[name]), (name, flag)


@pytest.mark.parametrize("name", NAMES)
def test_no_help_text_names_an_option_its_command_lacks(name):
    command = GROUP.commands[name]
    have = _options(command)
    for param in command.params:
        lacks = {m for m in _mentions(getattr(param, "help", None)) if m not in have and not m.startswith("--no-")}
        assert not lacks, f"{name} {param.opts[0]}: names {sorted(lacks)}"
    assert not _mentions(command.help) - have, f"{name}'s description: {sorted(_mentions(command.help) - have)}"


@pytest.mark.parametrize("name", NAMES)
def test_usage_reads_and_every_option_sits_in_a_titled_panel(name):
    text = page(name)
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage, usage
    untitled = text.split("─ Options ─", 1)[1].split("╰", 1)[0] if "─ Options ─" in text else ""
    assert re.findall(r"│ +(-[-\w]+)", untitled) in ([], ["--help"]), untitled


@pytest.mark.parametrize(("name", "old", "new"), [
    ("keep-fp32", ["--backend", "ort-cuda-fp16"], ["--backends", "ort-cuda-fp16"]),
    ("fix", ["--tol", "0.05"], ["--max-rel-rmse", "0.05"]),
    ("fix", ["--scenes", "4", "--verify-scenes", "2"], ["--n", "4", "--verify-n", "2"]),
    ("quantize", ["--calib-scenes", "infos.pkl", "--eval-scenes=3"], ["--calib", "infos.pkl", "--eval-n=3"]),
    ("train", ["--out", "c.pth", "--synthetic", "8", "--val-scenes", "2"],
     ["--out", "c.pth", "--n", "8", "--val-n", "2"]),
    ("replay", ["--max-frames", "5"], ["--n", "5"]),
])
def test_an_old_spelling_parses_as_the_new_one_with_one_line_each(name, old, new, capsys):
    command = GROUP.commands[name]
    assert command.make_context(name, list(old)).params == command.make_context(name, list(new)).params
    err = capsys.readouterr().err.splitlines()
    assert len(err) == sum((name, a.partition("=")[0]) in _help.DEPRECATED for a in old)
    assert all(line.startswith(f"cpdebug: warning: {name} --") and "is deprecated" in line for line in err), err


def test_fix_scenes_stays_a_path_and_sweep_html_a_file(capsys):
    fix = GROUP.commands["fix"]
    assert str(fix.make_context("fix", ["--scenes", "infos.pkl"]).params["scenes"]) == "infos.pkl"
    assert capsys.readouterr().err == ""
    sweep = GROUP.commands["sweep"]
    ctx = sweep.make_context("sweep", ["--out", "o", "--html", "-q"])  # the old flag: the default, said once
    assert ctx.params["html"] is None and ctx.params["quiet"] and not ctx.params["no_html"]
    assert capsys.readouterr().err.count("sweep --html is deprecated") == 1
    ctx = sweep.make_context("sweep", ["--out", "o", "--html", "r.html"])
    assert str(ctx.params["html"]) == "r.html" and capsys.readouterr().err == ""
