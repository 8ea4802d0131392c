"""cpdebug's command group: every command of cli/*_cmd.py under its name (`COMMANDS`), in the one error mapping
(`_Commands.invoke`, `cli/common/errors.py`), with the help pages polished (`cli/common/help.py`).

A `cpdebug` process runs one command, so `command_group()` builds the click command of each only when asked for it
(`_Commands.commands`, a `_Lazy` mapping): the command that runs, or every one for `cpdebug --help`; a server builds
each on its first run. Building the whole tree from every command's signature (typer reads each twice) and importing
every command module cost 0.25-0.3 CPU s of each process. Unknown commands still get click's "No such command" with
typer's suggestion (names need no building); the help pages and errors are the whole tree's
(tests/cli/test_command_group.py). `app`, the typer app with every command registered, is what typer's CliRunner
takes (tests, `from cp_debug.cli.main import app`); it is built on first use.

Best of 5 on the 2-core machine: `cpdebug serve --status` 0.58 -> 0.38 CPU s, `report nope.json` 0.85 -> 0.69,
`--version` 0.37 -> 0.19.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Annotated

import typer
from typer.core import TyperCommand, TyperGroup

from cp_debug.cli.common.errors import handle_errors
from cp_debug.cli.common.help import command_settings, polish, renamed, root_epilog
from cp_debug.cli.common.pipe import help_shown

COMMANDS = {  # name: its module in cli/ and function, in the order of `cpdebug --help`
    "bisect": "bisect_cmd:bisect", "sweep": "sweep_cmd:sweep", "report": "report_cmd:report",
    "extract": "extract_cmd:extract", "fix": "fix_cmd:fix", "keep-fp32": "keep_fp32_cmd:keep_fp32",
    "quantize": "quantize_cmd:quantize", "sensitivity": "sensitivity_cmd:sensitivity", "eval": "eval_cmd:eval_",
    "replay": "replay_cmd:replay", "bench": "bench_cmd:bench", "lint": "lint_cmd:lint", "export": "export_cmd:export",
    "infer": "infer_cmd:infer", "trt-kit": "trt_kit_cmd:trt_kit", "scenes": "scenes_cmd:scenes",
    "train": "train_cmd:train", "backends": "backends_cmd:backends", "serve": "serve_cmd:serve",
}


class _HelpPage:
    """A command (or the group) whose help page is noted as one: cut short by a reader that closed the pipe, it still
    ends 0 (`cli/common/pipe.py`)."""

    def format_help(self, ctx, formatter):
        help_shown()
        return super().format_help(ctx, formatter)

    def get_help_option(self, ctx):
        """--help, a flag: no type shown beside it."""
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class _Commands(_HelpPage, TyperGroup):
    """cpdebug's command group: runs the chosen command inside the one error mapping (`handle_errors`), so that
    `main()` and a test's `CliRunner().invoke(app, ...)` see the same one-line errors and exit codes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        polish(self)

    def invoke(self, ctx):
        with handle_errors():
            return super().invoke(ctx)

    def list_commands(self, ctx):
        """The names, in their order, without building each command (typer's own walks `commands.items()`)."""
        return list(self.commands)


class _Command(_HelpPage, TyperCommand):
    """One cpdebug command; its help page escaped for rich markup and its metavars named (`cli/common/help.py`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        polish(self)

    def parse_args(self, ctx, args):
        from cp_debug.cli.common.given import refuse_repeated

        args = renamed(self.name, args)
        refuse_repeated(self, args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        """The command, which names the built-in demo where it runs it (`cli/common/what_runs.py`)."""
        from cp_debug.cli.common.given import refuse_recipe_only
        from cp_debug.cli.common.what_runs import saying_what_runs

        refuse_recipe_only(self.name, ctx)
        with saying_what_runs(ctx):
            return super().invoke(ctx)


def _version(value: bool) -> None:
    if value:
        import cp_debug

        print(f"cpdebug {cp_debug.__version__}")
        raise typer.Exit(0)


def _main(version: Annotated[bool, typer.Option(
        "--version", "-V", callback=_version, is_eager=True, help="Print cp_debug's version and exit.")] = False):
    """Find where a deployed model (ONNX Runtime, TensorRT) parts from PyTorch, and why."""


def _root() -> typer.Typer:
    """The typer app of the group itself (its options, help and settings), no command yet."""
    root = typer.Typer(cls=_Commands, name="cpdebug",
                       help="Find where a deployed model (ONNX Runtime, TensorRT) parts from PyTorch, and why.",
                       epilog=root_epilog(), no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
    root.callback()(_main)
    return root


def _register(root: typer.Typer, name: str):
    """Command `name` added to typer app `root` (its module imported); its typer `CommandInfo`."""
    module, function = COMMANDS[name].split(":")
    callback = getattr(importlib.import_module(f"cp_debug.cli.{module}"), function)
    root.command(name, cls=_Command, **command_settings(name))(callback)
    return root.registered_commands[-1]


class _Lazy(Mapping):
    """A group's commands by name: each click command built (its module imported) on first look-up, then kept."""

    def __init__(self, root: typer.Typer):
        self._root, self._built = root, {}

    def __getitem__(self, name):
        if name not in self._built:
            if name not in COMMANDS:
                raise KeyError(name)
            self._built[name] = typer.main.get_command_from_info(
                _register(self._root, name), pretty_exceptions_short=self._root.pretty_exceptions_short,
                rich_markup_mode=self._root.rich_markup_mode)
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS)


def command_group() -> _Commands:
    """cpdebug's click command group, each command built when first looked up (see the module's docstring)."""
    root = _root()
    group = typer.main.get_group(root)
    group.commands = _Lazy(root)
    return group


def __getattr__(name: str):
    """`app`: the typer app with every command registered, built on first use (see the module's docstring)."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    app = _root()
    for command in COMMANDS:
        _register(app, command)
    globals()["app"] = app
    return app
