"""The docs name only options that exist (issue 85, item 6): every `cpdebug CMD … --option` written in README.md and
docs/ is an option of CMD, and every option named alone in prose (`` `--option` ``) is one of some command, or of the
other tools the docs quote. An old spelling (a hidden alias, cli/common/help.py `DEPRECATED`) appears only in
docs/terms.md, which lists them; the docs use the current one.

The options are read from the command tree itself (typer's click commands), so a renamed option fails here."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "docs" / "how-to").glob("*.md")])
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*[a-z0-9](?![A-Za-z0-9_-])")
COMMAND = re.compile(r"\bcpdebug ([a-z][a-z0-9-]*)((?:[^`|&;#\n]|\|(?=[^ ]))*)")
# options of the other tools the docs quote (pip, pytest, polygraphy, AWML's PTQ script), named alone in prose
OTHER_TOOLS = {"--no-deps", "--dist", "--durations", "--load-inputs", "--onnxrt", "--trt", "--extra-index-url",
               "--index-url", "--skip-layers", "--fp-to-fp16", "--extra_options"}  # the last: ORT GenAI's builder
# the lab notebook quotes the benchmark scripts' own options in prose; its cpdebug command lines are still checked
PROSE_SKIPPED = {"measurements.md"}
LISTS_OLD_SPELLINGS = {"terms.md"}


@cache
def options() -> dict[str, set[str]]:
    """Every command's long options (both spellings of a flag: --local/--no-local), by command name."""
    import typer

    from cp_debug.cli.main import app

    group = typer.main.get_command(app)
    found = {}
    for name in group.list_commands(None):
        params = group.commands[name].params
        found[name] = {"--help"} | {o for p in params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}
    return found


def old_spellings() -> dict[str, set[str]]:
    from cp_debug.cli.common.help import DEPRECATED

    old: dict[str, set[str]] = {}
    for command, spelling in DEPRECATED:
        old.setdefault(command, set()).add(spelling)
    return old


def command_lines(text: str) -> list[tuple[int, str, str]]:
    """(line number, command, what follows it) of every `cpdebug CMD …` in a page: inline code and code blocks (a
    line that ends in `\\` goes on in the next), a block's comment (`# …`) left out."""
    found, held, start = [], "", 0
    for number, line in enumerate(text.split("\n"), 1):
        start = start or number
        if line.endswith("\\"):
            held += line[:-1] + " "
            continue
        for m in COMMAND.finditer(held + line):
            found.append((start, m.group(1), m.group(2)))
        held, start = "", 0
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_line_names_options_its_command_has(page):
    known, old = options(), old_spellings()
    wrong = []
    for number, command, rest in command_lines(page.read_text()):
        if command not in known:  # `cpdebug serve`'s socket, `cpdebug: error: …` and other words after cpdebug
            continue
        for option in OPTION.findall(rest):
            if option in known[command] or (option in old.get(command, ()) and page.name in LISTS_OLD_SPELLINGS):
                continue
            why = "is an old spelling (see docs/terms.md)" if option in old.get(command, ()) else "is no option of it"
            wrong.append(f"line {number}: cpdebug {command} {option} {why}")
    assert not wrong, f"{page.name}:\n" + "\n".join(wrong)


@pytest.mark.parametrize("page", [p for p in PAGES if p.name not in PROSE_SKIPPED],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_option_named_in_prose_exists(page):
    every = set().union(*options().values()) | {"--version"}
    old = set().union(*old_spellings().values())
    wrong = []
    for number, line in enumerate(page.read_text().split("\n"), 1):
        for span in re.findall(r"`([^`]*)`", line):
            if not span.startswith("--"):
                continue
            option = OPTION.match(span)
            if option is None or option.group() in OTHER_TOOLS:
                continue
            name = option.group()
            if name in every or (name in old and page.name in LISTS_OLD_SPELLINGS):
                continue
            why = "is an old spelling (see docs/terms.md)" if name in old else "is an option of no command"
            wrong.append(f"line {number}: {name} {why}")
    assert not wrong, f"{page.name}:\n" + "\n".join(wrong)


def test_the_check_bites():
    """A made-up option after a command, and an old spelling, are both caught."""
    lines = command_lines("run `cpdebug quantize --calib-scenes infos.pkl --only x` then `cpdebug bisect --json -`")
    assert lines[0][1] == "quantize" and OPTION.findall(lines[0][2]) == ["--calib-scenes", "--only"]
    assert lines[1][1] == "bisect" and OPTION.findall(lines[1][2]) == ["--json"]
    held = command_lines("```\ncpdebug lint --config cfg.py \\\n    --onnx deploy/  # a comment --n\n```")
    assert [(n, c, OPTION.findall(r)) for n, c, r in held] == [(2, "lint", ["--config", "--onnx"])]
    assert "--calib-scenes" in old_spellings()["quantize"] and "--calib-scenes" not in options()["quantize"]
    assert "--no-noise-floor" in options()["bisect"]


def test_no_page_opens_with_a_moved_from_line():
    stale = [p.name for p in PAGES if "Moved from the README" in p.read_text()]
    assert not stale


def test_every_help_example_names_options_its_command_has():
    """The two examples at the end of each help page (cli/common/help.py `EXAMPLES`), read as the docs are."""
    from cp_debug.cli.common.help import EXAMPLES

    known = options()
    wrong = [f"{command} {option}" for pair in EXAMPLES.values() for line in pair
             for _, command, rest in command_lines(line) for option in OPTION.findall(rest)
             if option not in known[command]]
    assert not wrong
