"""One name, one metavar, one panel and one default per idea (issue 85, item 1): docs/terms.md's option table is the
source, and every help page is read against it.

Each row names an option, the panel it sits in, its metavar and its default; a command that must differ is named in
the cell (`CMD: value`), and a count whose default is each command's own says "the command's own" (its page then
shows one). Every option two commands share must have a row, and the value one option takes is of one kind (a count,
a number, a flag or text) wherever its metavar is the same."""

from __future__ import annotations

from dataclasses import replace

import pytest
import typer

from cp_debug.cli.common import help as _help, options as _options
from cp_debug.cli.main import app
from tests.cli.terms_table import TERMS, Cell, Row, cell, table

GROUP = typer.main.get_command(app)
OWN = "the command's own"
FLAG = "—"


def shown_default(param) -> str | None:
    """The default a help page shows for `param`: its words (`show_default="demo"`), on/off for a flag, the value;
    None where it shows none."""
    if isinstance(param.show_default, str):
        return param.show_default
    if param.show_default is False:
        return None
    if param.is_flag:
        return "on" if param.default else "off"
    return None if param.default is None else str(param.default)


def kind(param) -> str:
    """What an option takes: a count, a number, a flag or text (a path or a name)."""
    if param.is_flag:
        return "flag"
    annotation = param.type_descriptor.annotation
    if param.type_descriptor.is_list:
        annotation = annotation.__args__[0]
    return {int: "count", float: "number"}.get(annotation, "text")


def visible(command) -> dict[str, object]:
    """A command's shown options by their long name."""
    return {max(p.opts, key=len): p for p in command.params
            if p.param_type_name == "option" and not p.hidden and p.opts[0].startswith("-")}


def mismatches(rows: list[Row], commands: dict) -> list[str]:
    """Every way the help pages of `commands` ({name: click command}) part from the table `rows`."""
    pages = {name: visible(command) for name, command in commands.items()}
    wrong = []
    by_option = {row.option: row for row in rows}
    shared = {}
    for name, options in pages.items():
        for option in options:
            shared.setdefault(option, []).append(name)
    wrong += [f"{o}: {', '.join(c)} share it, docs/terms.md has no row" for o, c in shared.items()
              if len(c) > 1 and o not in by_option]
    for row in rows:
        having = shared.get(row.option, [])
        if not having:
            wrong.append(f"{row.option}: a row, and no command has it")
        named = set(row.metavar.differ) | set(row.default.differ)
        wrong += [f"{row.option}: the row names {n}, which has no {row.option}" for n in sorted(named - set(having))]
        kinds = {}
        for name in having:
            param = pages[name][row.option]
            if param.rich_help_panel != row.panel:
                wrong.append(f"{name} {row.option}: panel {param.rich_help_panel!r}, the table {row.panel!r}")
            metavar = param.metavar or FLAG
            if metavar != row.metavar.of(name):
                wrong.append(f"{name} {row.option}: metavar {metavar!r}, the table {row.metavar.of(name)!r}")
            kinds.setdefault(row.metavar.of(name), {}).setdefault(kind(param), []).append(name)
            default, want = shown_default(param), row.default.of(name)
            if want == OWN:
                if default is None:
                    wrong.append(f"{name} {row.option}: the command's own default, and its page shows none")
            elif default != want:
                wrong.append(f"{name} {row.option}: default {default!r}, the table {want!r}")
        wrong += [f"{row.option}: takes {' and '.join(sorted(k))} ({k})" for k in kinds.values() if len(k) > 1]
    return wrong


ROWS = table(TERMS.read_text())
COMMANDS = {name: GROUP.commands[name] for name in GROUP.commands}


def test_every_help_page_agrees_with_the_terms_table():
    assert len(ROWS) > 50
    assert mismatches(ROWS, COMMANDS) == []


@pytest.mark.parametrize("plant", [
    lambda r: replace(r, metavar=Cell("FILE", {})) if r.option == "--calib" else r,
    lambda r: replace(r, panel=_options.OUTPUT) if r.option == "--seed" else r,
    lambda r: replace(r, default=Cell("1", {})) if r.option == "--tolerance-mode" else r,
    lambda r: replace(r, default=Cell(OWN, {})) if r.option == "--backends" else r,
    lambda r: None if r.option == "--exclude-int8" else r,
], ids=["metavar", "panel", "default", "own-default-not-shown", "row-missing"])
def test_a_planted_mismatch_fails(plant):
    rows = [r for r in map(plant, ROWS) if r is not None]
    assert mismatches(rows, COMMANDS)


def test_a_command_that_parts_from_the_table_fails(monkeypatch):
    """The other way round: a page changed under the table (a metavar, a default) is caught."""
    param = visible(COMMANDS["fix"])["--calib-n"]
    monkeypatch.setattr(param, "metavar", "COUNT")
    assert any("fix --calib-n: metavar 'COUNT'" in w for w in mismatches(ROWS, COMMANDS))
    monkeypatch.setattr(param, "metavar", "N")
    seed = visible(COMMANDS["fix"])["--seed"]
    monkeypatch.setattr(seed, "show_default", True)  # None shown as nothing: not the table's 0
    assert any("fix --seed: default None" in w for w in mismatches(ROWS, COMMANDS))


def test_cells_read_their_exceptions():
    c = cell("`demo` (keep-fp32: `transfusion-demo`; lint: none)")
    assert (c.value, c.of("lint"), c.of("keep-fp32"), c.of("bisect")) == ("demo", None, "transfusion-demo", "demo")
    c = cell("`DIR` (infer, train: `FILE`)")
    assert (c.of("infer"), c.of("train"), c.of("fix")) == ("FILE", "FILE", "DIR")
    assert cell("`model\\|fixed`").value == "model|fixed"
    assert cell("the command's own (trt-kit: none)").of("trt-kit") is None


@pytest.mark.parametrize(("name", "old", "new"), [
    ("quantize", ["--skip-layers", "a,b"], ["--exclude-int8", "a,b"]),
    ("sensitivity", ["--per-tensor-convtranspose"], ["--convtranspose", "per-tensor"]),
    ("keep-fp32", ["--candidates", "all"], ["--search-nodes", "all"]),
    ("fix", ["--candidates=x"], ["--search-nodes=x"]),
])
def test_the_names_decided_here_keep_the_old_spelling(name, old, new, capsys):
    command = GROUP.commands[name]
    assert command.make_context(name, list(old)).params == command.make_context(name, list(new)).params
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"cpdebug: warning: {name} {old[0].partition('=')[0]} is deprecated")
    assert old[0].partition("=")[0] not in {o for p in command.params for o in p.opts}  # hidden


def _every(option: str) -> dict[str, object]:
    """`option`'s parameter in each command that shows it."""
    return {name: visible(c)[option] for name, c in COMMANDS.items() if option in visible(c)}


def _calib_is_a_path():
    """`--calib` was a file here and a dataset there: a path everywhere (its help says what each reads), and the count
    of calibration frames is --calib-n, a count."""
    assert {(kind(p), p.metavar) for p in _every("--calib").values()} == {("text", "PATH")}
    assert {kind(p) for p in _every("--calib-n").values()} == {"count"}


def _inputs_one_name_for_one_or_many():
    """`--inputs` one file or a folder: PATH on every page, with --torch/--onnx, beside --points (a scan) and not
    instead of it."""
    assert {p.metavar for p in _every("--inputs").values()} == {"PATH"}
    assert all("--torch/--onnx" in p.help for p in _every("--inputs").values())
    assert {p.metavar for p in _every("--points").values()} == {"FILE"}


def _candidate_is_a_backend():
    """`--candidate` (extract: which backend) beside `--candidates` (nodes): the nodes are --search-nodes."""
    every = {o for c in COMMANDS.values() for o in visible(c)}
    assert "--candidate" in every and "--candidates" not in every and "--search-nodes" in every


def _exclude_int8_one_name():
    """`--exclude-int8` (bisect) vs `--skip-layers` (quantize, sensitivity): one name, one metavar."""
    assert set(_every("--exclude-int8")) == {"bisect", "quantize", "sensitivity"}
    assert {p.metavar for p in _every("--exclude-int8").values()} == {"NAME,NAME…"}


def _tolerances_apart_from_a_target():
    """`--atol/--rtol` (element-wise, the Verdict panel) vs `--max-rel-rmse` (a target): `--tol` maps to the target."""
    assert _help.DEPRECATED[("fix", "--tol")][0] == "--max-rel-rmse"
    assert {p.rich_help_panel for o in ("--atol", "--rtol", "--max-rel-rmse") for p in _every(o).values()} == {
        _options.VERDICT}


def _calib_n_defaults_are_each_commands_own():
    """`--calib-n` had four defaults (100/16/16/4): each page shows its own, and the table says so."""
    shown = {name: shown_default(p) for name, p in _every("--calib-n").items()}
    assert shown == {"eval": "4", "sweep": "4", "fix": "16", "sensitivity": "16", "quantize": "100"}
    assert next(r for r in ROWS if r.option == "--calib-n").default.value == OWN


@pytest.mark.parametrize("case", [_calib_is_a_path, _inputs_one_name_for_one_or_many, _candidate_is_a_backend,
                                  _exclude_int8_one_name, _tolerances_apart_from_a_target,
                                  _calib_n_defaults_are_each_commands_own], ids=lambda f: f.__name__.strip("_"))
def test_each_case_the_issue_named(case):
    """Issue 85's list of names that meant two things, each as a new user meets it on the help pages (the pages at 80
    columns: tests/cli/test_output_width.py)."""
    case()


def test_every_option_declared_once_carries_its_groups_panel():
    """cli/common/options.py's options (`Preset`, `calib_option(...)`, …) each carry the panel of their group
    (`GROUPS`),
    so a command that takes one needs nothing else to put it where every other page has it."""
    import typing

    declared = [m for v in vars(_options).values() if typing.get_origin(v) is typing.Annotated
                for m in v.__metadata__ if isinstance(m, typer.models.OptionInfo)]
    declared += [_options.calib_option("x"), _options.calib_n_option("x"), _options.exclude_int8_option("x"),
                 _options.search_nodes_option("x"), _options.level_option("x"), _options.preset_option("x"),
                 _options.backends_option("x")]
    assert len(declared) > 40
    for info in declared:
        names = [n for n in (info.default, *info.param_decls) if isinstance(n, str) and n.startswith("-")]
        long = max(names, key=len).split("/")[0]  # typer keeps the first name where the default would go
        assert info.rich_help_panel == _options.PANEL_OF.get(long), long
        assert info.rich_help_panel is not None or long in ("--rot-y-axis-reference", "--no-rot-y-axis-reference"), long


def test_a_default_in_words_shows_as_a_value():
    """A default that None stands for (fix --preset, --seed, --n) shows as `[default: demo]`, like any other."""
    from typer.testing import CliRunner

    text = CliRunner().invoke(app, ["fix", "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"}).stdout
    assert "[default: (" not in " ".join(text.split())
    lines = text.splitlines()
    for option, value in (("--preset", "demo"), ("--seed", "0"), ("--n", "8"), ("--tolerance-mode", "model")):
        start = next(i for i, line in enumerate(lines) if line.startswith(f"│ {option} "))
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith(("│ -", "╰")))
        row = " ".join(" ".join(lines[start:end]).replace("│", " ").split())
        assert f"[default: {value}]" in row, (option, row)


def test_no_command_declares_a_shared_option_itself():
    """An option two commands share is declared through cli/common/options.py (an alias such as `Preset`, a function
    such
    as `calib_option`, or `option(NAME, help=…)` where the help is the command's own), never with `typer.Option`
    in a command module: there it would miss its group's panel and drift from the others."""
    import ast

    shared = {o for o in {o for c in COMMANDS.values() for o in visible(c)}
              if sum(o in visible(c) for c in COMMANDS.values()) > 1}
    found = []
    for path in sorted(TERMS.parents[1].joinpath("cp_debug", "cli").glob("*_cmd.py")):
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, ast.FunctionDef):
                continue
            for arg in [*fn.args.args, *fn.args.kwonlyargs]:
                for call in ast.walk(arg.annotation) if arg.annotation else ():
                    if isinstance(call, ast.Call) and ast.unparse(call.func) == "typer.Option":
                        names = [a.value for a in call.args if isinstance(a, ast.Constant)]
                        long = max(names, key=len).split("/")[0] if names else "--" + arg.arg.replace("_", "-")
                        if long in shared:
                            found.append(f"{path.name} {fn.name}: {long}")
    assert len(shared) > 50 and found == []
