"""One lint over whatever inputs are given: a training config, Autoware parameter files, a deployed pair, data.

A recipe's lint (its `lint` plug-in's `lint(request)`: `recipes/<name>/lint.py`) reads each input (a file that cannot
be read is a BadInputError: exit 2), gathers its facts (on `sources.py`) and runs the checks (on `checks.py`).
`lint_before_run` is what bisect and sweep call first, with the run's recipe's plug-in: the same
checks over the run's model and the files the user gave (`--params`, a `SPEC@DIR` folder holding parameter files);
a mismatch between the model and the deployed pair (the two sides the run compares) stops the run in one line,
every other mismatch becomes a warning of the run's report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from cp_debug.errors import BadInputError
from cp_debug.lint.findings import LintFinding, LintReport
from cp_debug.lint.request import LintRequest  # noqa: F401 (LintRequest: the callers' import)
from cp_debug.lidar.record import ModelRecord


def params_of_folder(folder: Path | None) -> tuple[Path, ...]:
    """A deployed folder's Autoware parameter files (an Autoware model folder ships them beside the pair)."""
    from cp_debug.data.model_folder import param_files

    return tuple(param_files(folder)) if folder is not None and Path(folder).is_dir() else ()


def lint_reports_before_run(model: ModelRecord, params: Sequence[Path], onnx_dirs: Sequence[Path],
                            linter) -> tuple[LintReport, ...]:
    """The checks a run makes first when it is given parameter files (`--params`) or deployed folders that hold
    some (`SPEC@DIR`), one report per folder (or one for --params alone): a mismatch between the run's model and a
    deployed pair is a BadInputError (the comparison would mean nothing). Neither given: no report (the run checks
    the pair's interface and weights itself). `linter`: the run's recipe's `lint` plug-in (its `model_config(name)`
    and `lint(request)`, recipe_contract/recipe.PLUGINS)."""
    todo = [(tuple(params) or params_of_folder(d), d) for d in (list(onnx_dirs) or [None])]
    todo = [(files, d) for files, d in todo if files]
    if not todo:
        return ()
    cfg = linter.model_config(model.model_name)
    label = Path(model.config).name if model.config is not None else f"preset {model.model_name}"
    reports = []
    for files, folder in todo:
        report = linter.lint(LintRequest(cfg, label, tuple(Path(p) for p in files), folder))
        breaking = [f for f in report.mismatches if f.breaks_comparison]
        if breaking:
            raise BadInputError(f"lint: {breaking[0].check}: {breaking[0].message}; the run would compare different "
                                "networks (cpdebug lint lists every check)")
        reports.append(report)
    return tuple(reports)


def lint_notes(reports: Sequence[LintReport]) -> list[str]:
    """The mismatches and warnings of `lint_reports_before_run`, one line each, for the run's report."""
    return [_note(f) for r in reports for f in (*r.mismatches, *r.warnings)]


def lint_before_run(model: ModelRecord, params: Sequence[Path], onnx_dirs: Sequence[Path], linter) -> list[str]:
    """`lint_reports_before_run` as the lines a run reports: the other mismatches and the warnings, one line each."""
    return lint_notes(lint_reports_before_run(model, params, onnx_dirs, linter))


def _note(f: LintFinding) -> str:
    return f"lint {f.status}: {f.check}: {f.message}"
