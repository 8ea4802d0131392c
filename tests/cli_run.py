"""`cpdebug ARGS` run in this process (typer's CliRunner on `cp_debug.cli.main.app`), as a `CompletedProcess`.

The same command line, the same app and the same error mapping as the entry point (`_Commands.invoke` wraps every
command in `handle_errors`), without a fresh interpreter importing torch, ONNX Runtime and cp_debug again (about
2.5 CPU seconds a run). What only a real process shows stays in subprocess tests: the entry point, fd 2 and
third-party text on the terminal (tests/cli/test_quiet_terminal.py, tests/cli/test_errors.py, tests/cli/test_help.py),
a bundle's repro.py, a killed or size-limited process (tests/fuzz/test_outputs.py), Ray workers.

Every JSON report a run writes (bisect/eval/fix `--json`, a sweep's `sweep.json` and its bisects, a fix folder's
`fix.json`) is validated against its schema in docs/schemas/ on the way out (issue 56's contract): every CLI test
of the suite is a schema test, with no run of its own (tests/docs/test_schemas.py checks that this check bites)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Mapping
from pathlib import Path


def cpdebug(*args, cwd: str | Path | None = None, env: Mapping[str, str | None] | None = None,
            timeout: float | None = None) -> subprocess.CompletedProcess:
    """`args` as typed after `cpdebug` (str() of each); stdout and stderr apart, as a subprocess gives them.
    `env`: variables set (None: unset) for the run, on top of COLUMNS=200 (a wide terminal: names do not wrap).
    `timeout` is accepted for the subprocess helpers' signature and not enforced."""
    from typer.testing import CliRunner

    from cp_debug.cli.main import app

    del timeout
    argv = [str(a) for a in args]
    with contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
        res = CliRunner().invoke(app, argv, env={"COLUMNS": "200", **(env or {})}, catch_exceptions=False)
    validate_written(argv, Path(cwd) if cwd is not None else Path.cwd())
    return subprocess.CompletedProcess(["cpdebug", *argv], res.exit_code, res.stdout, res.stderr)


SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "schemas"
# command -> (option naming a JSON file, its schema); a folder option -> [(file in it, schema), ...]
_JSON_OPTION = {"bisect": "report", "eval": "eval", "fix": "fix"}
_FOLDER_FILES = {"sweep": [("sweep.json", "sweep"), ("bisect/*.json", "report"), ("generate.json", "generate")],
                 "fix": [("fix.json", "fix")]}


def written_reports(argv: list[str], cwd: Path) -> list[tuple[Path, str]]:
    """The JSON reports `cpdebug ARGV` was asked to write, with their schema's name (those that exist)."""
    cmd = next((a for a in argv if not a.startswith("-")), None)
    found: list[tuple[Path, str]] = []

    def value(option: str) -> Path | None:
        for i, a in enumerate(argv):
            if a == option and i + 1 < len(argv):
                return cwd / argv[i + 1]
            if a.startswith(option + "="):
                return cwd / a.split("=", 1)[1]
        return None

    json_out = value("--json")
    if cmd is None:
        return found
    if cmd in _JSON_OPTION and json_out is not None and json_out.is_file():
        found.append((json_out, _JSON_OPTION[cmd]))
    folder = value("--out")
    for pattern, name in _FOLDER_FILES.get(cmd, []) if folder is not None and folder.is_dir() else []:
        found += [(f, name) for f in sorted(folder.glob(pattern)) if f.is_file()]
    return found


def validate_written(argv: list[str], cwd: Path) -> None:
    """Each report `cpdebug ARGV` wrote, against its schema (jsonschema.ValidationError names the field)."""
    reports = written_reports(argv, cwd)
    if not reports:
        return
    import json

    import jsonschema

    for path, name in reports:
        schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
        jsonschema.validate(json.loads(path.read_text()), schema, cls=jsonschema.Draft202012Validator)
