"""One lint over whatever inputs are given: a training config, Autoware parameter files, a deployed pair, data.

`lint(request)` reads each input (a file that cannot be read is a BadInputError: exit 2), gathers its facts
(`sources.py`) and runs the checks (`checks.py`). `lint_before_run` is what bisect and sweep call first: the same
checks over the run's model and the files the user gave (`--params`, a `SPEC@DIR` folder holding parameter files);
a mismatch between the model and the deployed pair (the two sides the run compares) stops the run in one line,
every other mismatch becomes a warning of the run's report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from cp_debug.errors import BadInputError
from cp_debug.lint.findings import Fact, LintFinding, LintReport
from cp_debug.models.centerpoint.config import CenterPointConfig
from cp_debug.models.centerpoint.source import ModelRecord

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.lint.sources import Facts
    from cp_debug.models.transfusion.config import TransFusionConfig


@dataclass(frozen=True)
class LintRequest:
    """The inputs of one lint; any may be missing. `config_label` names the config in messages (its file name).
    `frames` (with `data_label`): scans whose pillar count is checked against the voxel cap. `recipe`: centerpoint
    (the config a CenterPointConfig, onnx_dir the deployed pair) or transfusion (a TransFusionConfig, the folder of
    transfusion.onnx or the file: `transfusion.py`)."""

    config: "CenterPointConfig | TransFusionConfig | None" = None
    config_label: str = ""
    params: tuple[Path, ...] = ()
    onnx_dir: Path | None = None
    frames: tuple = ()
    data_label: str = ""
    recipe: str = "centerpoint"


def lint(req: LintRequest) -> LintReport:
    if req.recipe == "transfusion":
        from cp_debug.lint.transfusion import lint_transfusion

        return lint_transfusion(req)
    from cp_debug.data.autoware_params import read_params
    from cp_debug.lint.checks import run_checks
    from cp_debug.lint.sources import config_facts, onnx_facts, params_facts, read_pair

    check_request(req)
    autoware = read_params(req.params) if req.params else None
    cfg = config_facts(req.config, req.config_label or req.config.name) if req.config is not None else {}
    params = params_facts(autoware) if autoware is not None else {}
    pair = read_pair(req.onnx_dir) if req.onnx_dir is not None else None
    grid = params.get("grid") or cfg.get("grid")
    onnx = onnx_facts(pair, grid.value if grid is not None else None) if pair is not None else {}
    findings = run_checks(cfg, params, onnx, autoware, data_fact(req, cfg, params))
    return LintReport(tuple(findings), inputs_of(req, [pair.encoder, pair.backbone] if pair is not None else []))


def check_request(req: LintRequest) -> None:
    """What a lint needs before anything is read: two inputs to compare, and the --params files there."""
    if req.config is None and not req.params and req.onnx_dir is None:
        raise BadInputError("nothing to check: give --config (or --preset), --params FILE or --onnx DIR")
    if not req.params and req.onnx_dir is None and not req.frames:
        raise BadInputError("a training config alone has nothing to be checked against: add --params FILE, "
                            "--onnx DIR or --points/--scenes")
    for p in req.params:
        if not Path(p).is_file():
            raise BadInputError(f"--params {p}: no such file (give Autoware's *.param.yaml files)")


def data_fact(req: LintRequest, cfg: Facts, params: Facts) -> Fact | None:
    """The most pillars a frame of `req.frames` fills, within the params' range and voxel size (else the config's);
    None without frames."""
    if not req.frames:
        return None
    from cp_debug.lint.voxel_cap import fullest_frame

    if req.config is None:
        raise BadInputError("--points/--scenes need the config (or --preset) the points are loaded with")
    pcr = params.get("point_cloud_range") or cfg["point_cloud_range"]
    vs = params.get("voxel_size") or cfg["voxel_size"]
    return fullest_frame(req.frames, req.config, pcr.value, vs.value, req.data_label or "data")


def inputs_of(req: LintRequest, onnx_files: Sequence[Path]) -> dict:
    """What a report says was read."""
    return {"config": req.config_label or (req.config.name if req.config is not None else None),
            "params": [str(p) for p in req.params], "onnx": [str(f) for f in onnx_files],
            "data": req.data_label or None, "frames": len(req.frames)}


def params_of_folder(folder: Path | None) -> tuple[Path, ...]:
    """A deployed folder's Autoware parameter files (an Autoware model folder ships them beside the pair)."""
    from cp_debug.data.model_folder import param_files

    return tuple(param_files(folder)) if folder is not None and Path(folder).is_dir() else ()


def lint_reports_before_run(model: ModelRecord, params: Sequence[Path],
                            onnx_dirs: Sequence[Path]) -> tuple[LintReport, ...]:
    """The checks a run makes first when it is given parameter files (`--params`) or deployed folders that hold
    some (`SPEC@DIR`), one report per folder (or one for --params alone): a mismatch between the run's model and a
    deployed pair is a BadInputError (the comparison would mean nothing). Neither given: no report (the run checks
    the pair's interface and weights itself)."""
    from cp_debug.models.centerpoint.presets import get_preset

    todo = [(tuple(params) or params_of_folder(d), d) for d in (list(onnx_dirs) or [None])]
    todo = [(files, d) for files, d in todo if files]
    if not todo:
        return ()
    cfg = get_preset(model.model_name)
    label = Path(model.config).name if model.config is not None else f"preset {model.model_name}"
    reports = []
    for files, folder in todo:
        report = lint(LintRequest(cfg, label, tuple(Path(p) for p in files), folder))
        breaking = [f for f in report.mismatches if f.breaks_comparison]
        if breaking:
            raise BadInputError(f"lint: {breaking[0].check}: {breaking[0].message}; the run would compare different "
                                "networks (cpdebug lint lists every check)")
        reports.append(report)
    return tuple(reports)


def lint_notes(reports: Sequence[LintReport]) -> list[str]:
    """The mismatches and warnings of `lint_reports_before_run`, one line each, for the run's report."""
    return [_note(f) for r in reports for f in (*r.mismatches, *r.warnings)]


def lint_before_run(model: ModelRecord, params: Sequence[Path], onnx_dirs: Sequence[Path]) -> list[str]:
    """`lint_reports_before_run` as the lines a run reports: the other mismatches and the warnings, one line each."""
    return lint_notes(lint_reports_before_run(model, params, onnx_dirs))


def _note(f: LintFinding) -> str:
    return f"lint {f.status}: {f.check}: {f.message}"
