"""The command line, `cpdebug` (floor 12, the top): one thin typer module per command (`<name>_cmd.py`).

Errors → one line + exit code, mapped once around every command by the command group in `app.py`
(`common/errors.handle_errors`); a closed stdout/stderr ends the command quietly (`common/pipe.py`: 141, the files
still written whole); the program (`main.entry`, the console script and `python -m`) first offers the command to this
environment's resident server (`server.client.forward`), else builds the command it names (`app.py`, each command
built and its module imported when first looked up) and runs it, and ends through `main.leave`: Python's exit less
the interpreter's teardown; `serve_cmd.py` starts, asks after and stops the server and hands it the root command
group's runner (`command_runner`, which maps cli's errors); option groups written once in `common/` (its docstring:
the model options → `ModelRecord`, the samples of `--torch` / `--onnx` runs, fix's, the INT8 calibration options,
`--backends` with the command's rule in its help).

A command module takes shared options from `common/options.py` and helpers from `common/` and lower floors, never
from another command (pyproject.toml's contract "cli commands are independent"); of the command line only
`main.entry` (`forward`) and `serve_cmd` import the server. The command line resolves the run's recipe and hands its
`Recipe` down (`cp_debug/recipes/__init__.py`). What each command does: docs/commands.md.
"""
