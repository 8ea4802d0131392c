"""A deployed model folder: which file is which stage, the one home of the pair's file names.

Three namings are accepted, in this order, for a stage named `pts_voxel_encoder` / `pts_backbone_neck_head`:
  1. a model manifest beside the files (an Autoware `*.param.yaml` that sets `encoder_onnx_path` /
     `head_onnx_path`, relative to the folder, as the node resolves them against `model_path`);
  2. `<stage>.onnx`, as AWML's exporter and cp_debug write them;
  3. `<stage>_<model>.onnx`, as Autoware's model folders name them (`pts_voxel_encoder_centerpoint_tiny.onnx`);
     one such file per stage, or the folder is ambiguous and says so.
The folder's parameter files (`*.param.yaml`) are listed for `cpdebug lint` and the runs that check them first.
"""

from __future__ import annotations

from pathlib import Path

from cp_debug.errors import BadInputError

# stage name -> the manifest key that names its file (Autoware's node parameters)
MANIFEST_KEYS = {"pts_voxel_encoder": "encoder_onnx_path", "pts_backbone_neck_head": "head_onnx_path"}
STAGES = tuple(MANIFEST_KEYS)


def param_files(folder: Path) -> list[Path]:
    """The folder's ROS 2 parameter files (`*.param.yaml`), sorted by name."""
    from cp_debug.data.autoware_params import is_param_file

    return sorted(p for p in Path(folder).glob("*.param.yaml") if is_param_file(p))


def _manifest_file(folder: Path, stage: str) -> Path | None:
    key = MANIFEST_KEYS.get(stage)
    files = param_files(folder)
    if key is None or not files:
        return None
    from cp_debug.data.autoware_params import read_params

    for f in files:
        p = read_params([f]).get(key)  # any node's file: the manifest is the one that names the stage's file
        if p is None or not isinstance(p.value, str) or "$(" in p.value:  # a launch substitution: not resolvable
            continue
        path = Path(p.value) if Path(p.value).is_absolute() else folder / p.value
        if not path.is_file():
            raise BadInputError(f"{p.where} = {p.value!r}: {path} is missing")
        return path
    return None


def stage_file(folder: str | Path, stage: str, *, what: str = "") -> Path | None:
    """The file of `stage` in `folder` (manifest, `<stage>.onnx`, `<stage>_<model>.onnx`), or None where none of
    the three is there. Two `<stage>_*.onnx` files with neither of the first two is a BadInputError."""
    folder = Path(folder)
    found = _manifest_file(folder, stage)
    if found is not None:
        return found
    plain = folder / f"{stage}.onnx"
    if plain.is_file():
        return plain
    named = sorted(folder.glob(f"{stage}_*.onnx"))
    if len(named) > 1:
        raise BadInputError(f"{what or folder}: {', '.join(p.name for p in named)} are all {stage} files: keep one, "
                            f"or name the pair in a manifest (encoder_onnx_path / head_onnx_path)")
    return named[0] if named else None


def expected_names(stages: list[str] | tuple[str, ...] = STAGES) -> str:
    """How the pair may be named, for an error that lists what is missing."""
    return ", ".join(f"{s}.onnx (or {s}_<model>.onnx)" for s in stages)

