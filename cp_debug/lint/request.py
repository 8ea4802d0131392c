"""What one lint is asked (`LintRequest`) and what every recipe's lint does with it before and after its own checks:
the request checked before anything is read, the data's fact (the fullest frame's pillars), the inputs a report
names. CenterPoint's lint (recipes/centerpoint/lint.py) and TransFusion-L's (recipes/transfusion/lint.py) both stand
on this module."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from cp_debug.errors import BadInputError
from cp_debug.lint.findings import Fact

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.lint.sources import Facts


@dataclass(frozen=True)
class LintRequest:
    """The inputs of one lint; any may be missing. `config_label` names the config in messages (its file name).
    `frames` (with `data_label`): scans whose pillar count is checked against the voxel cap. What `config` and
    `onnx_dir` are is the recipe's whose lint reads the request (its `lint` plug-in): CenterPoint's a
    CenterPointConfig and the deployed pair, TransFusion-L's a TransFusionConfig and the folder of transfusion.onnx
    or the file."""

    config: Any = None  # the recipe's model config (its `lint` plug-in's `model_config`)
    config_label: str = ""
    params: tuple[Path, ...] = ()
    onnx_dir: Path | None = None
    frames: tuple = ()
    data_label: str = ""


def check_request(req: LintRequest) -> None:
    """What a lint needs before anything is read: two inputs to compare, and the --params files there."""
    if req.config is None and not req.params and req.onnx_dir is None:
        raise BadInputError("nothing to check: give --config (or --preset), --params FILE or --onnx-dir DIR")
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
