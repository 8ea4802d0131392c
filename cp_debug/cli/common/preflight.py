"""What a command checks before it spends time: optional libraries, input files, output paths.

Each check is one clear line (a `CpDebugError`) and runs in milliseconds, so a missing nuscenes-devkit or an
unwritable `--json` path is said before the first scene is run, not after a minute of inference.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from cp_debug.errors import BadInputError


def has_module(name: str) -> bool:
    """Whether `import name` can find the module (without importing it; a `sys.modules[name] = None` blocks it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def check_outputs(*paths: str | os.PathLike | None) -> None:
    """Every output file given can be written (None and '-', stdout, are skipped)."""
    from cp_debug.report.io import check_writable

    for path in paths:
        if path is not None and str(path) != "-":
            check_writable(path)


def check_inputs(**files: str | os.PathLike | None) -> None:
    """Every input given exists: `check_inputs(points=path)` fails with '--points PATH does not exist'."""
    for flag, path in files.items():
        if path is not None and not Path(path).exists():
            raise BadInputError(f"--{flag.replace('_', '-')} {path} does not exist")


def check_report_writers(parquet: str | os.PathLike | None = None, html: str | os.PathLike | None = None,
                         rrd: str | os.PathLike | None = None, pictures: str | os.PathLike | None = None) -> None:
    """The libraries the report's writers need: pyarrow for --parquet, matplotlib for --html and --pictures,
    rerun-sdk for --rrd; and a --pictures DIR that is no file."""
    if parquet is not None and not has_module("pyarrow"):
        raise BadInputError("--parquet needs pyarrow: pip install 'cp-debug[parquet]'")
    if html is not None and not has_module("matplotlib"):
        raise BadInputError("--html needs matplotlib: pip install matplotlib")
    if rrd is not None:
        from cp_debug.report.rerun_export import check_rerun

        check_rerun()
    if pictures is not None and Path(pictures).exists() and not Path(pictures).is_dir():
        raise BadInputError(f"--pictures {pictures} is a file: give a folder (made if missing)")


def check_library(module: str, need: str) -> None:
    """`module` can be imported, else `need` (what needs it and the pip line of its extra, one line) as a
    BackendUnavailableError, exit 3: said before any model loads, not when the finished work is being written."""
    from cp_debug.errors import BackendUnavailableError

    if not has_module(module):
        raise BackendUnavailableError(need)


def check_devkit() -> None:
    """nuscenes-devkit, which `eval`'s metrics need (BackendUnavailableError with the install line)."""
    from cp_debug.errors import BackendUnavailableError

    if not has_module("nuscenes"):
        from cp_debug.eval.devkit import INSTALL_HINT

        raise BackendUnavailableError(INSTALL_HINT)


def check_preset(model, recipe: str) -> None:
    """The preset `model` (a ModelRecord) names is one `recipe` ships, where the recipe checks it before torch loads
    (`Recipe.check_model`: CenterPoint's; a config file and a model factory are read where they load)."""
    from cp_debug.recipes.catalog import recipe as recipe_of

    check = recipe_of(recipe).check_model
    if model is not None and check is not None:
        check(model)


def refuse_options(recipe: str, command: str, given: dict, why: str = "", after: str = "") -> None:
    """One line, before anything runs, naming the options of `given` ({flag: value}; a value that is not falsy
    counts as given) that `recipe` refuses in `command` (`Recipe.refuses`: the default recipe's options, or ones not
    built for it yet). `why`: said after them (its `{title}`: the recipe's); `after`: at the end of the line."""
    from cp_debug.recipes import catalog

    r = catalog.recipe(recipe)
    named = [flag for flag, v in given.items() if v and flag in r.refuses.get(command, ())]
    if named:
        raise BadInputError(f"{', '.join(named)}: {catalog.recipe().title}'s{why.format(title=r.title)}; not for "
                            f"--recipe {r.name}{after}")


def check_torch_device(device: str) -> None:
    """`--device` is cpu or cuda, and cuda is there when asked (else exit 3, one line)."""
    from cp_debug.errors import BackendUnavailableError

    if device not in ("cpu", "cuda"):
        raise BadInputError(f"--device {device!r}: choose cpu or cuda")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailableError("--device cuda was asked but torch sees no CUDA device; use --device cpu")


def lint_first(model, params, dirs, stream, recipe: str | None = None) -> tuple:
    """`cpdebug lint`'s checks over the run's model, the --params files and the deployed folders' own parameter files,
    before anything runs (`lint.run.lint_reports_before_run`): a mismatch between the model and a deployed pair
    stops the command (one line); the other mismatches and the warnings are printed on `stream`, one line each.
    Returns the reports (none when there was nothing to check). `recipe`: the run's (None: the default), whose
    `lint` plug-in checks."""
    from cp_debug.lint.run import lint_notes, lint_reports_before_run
    from cp_debug.recipes.catalog import recipe as recipe_of

    reports = lint_reports_before_run(model, tuple(params or ()), [d for d in dirs if d is not None],
                                      recipe_of(recipe).plugin("lint"))
    for note in lint_notes(reports):
        print(f"cpdebug: {note}", file=stream, flush=True)
    return reports
