"""Autoware's parameter files (`autoware_lidar_centerpoint`, `autoware_lidar_transfusion`) → one typed
`AutowareParams`. Which node a file belongs to is the recipe's table (`AutowareNode`: the node's name and the groups
it declares, in the recipe's folder), handed to `read_params` by its caller.

The node (`src/node.cpp`) declares dotted ROS parameters (`model_params.voxel_size`,
`post_process_params.iou_nms_threshold`, …) that several YAML files fill in the real nested form
`/**: ros__parameters: model_params: …` (or under a node name instead of `/**`; a file without the wrapper is read
as the parameters themselves). Files are read in the order given and a later file's key replaces an earlier one's,
as `<param from=…>` lines do in the launch file; every value remembers where it came from (`file:key`).

The score thresholds have had five layouts, all read and decoded into one table (per class, per distance bin):
  * `post_process_params.score_threshold: 0.35` — one threshold (the first releases);
  * `post_process_params.score_thresholds: [CAR, TRUCK, …]` — one per class;
  * `model_params.score_thresholds: {upper_bounds: [...], thresholds: [...]}` — a flat list, one row per bin;
  * `model_params.score_thresholds: {upper_bounds: [...], thresholds: {CAR: [...], …}}` — one list per class;
  * `model_params.detection_score_thresholds: {distance_bin_upper_limits, min_confidence_scores: {CAR: [...]}}` —
    the model manifest (`version: v4.1`, which also names the ONNX files: `encoder_onnx_path`, `head_onnx_path`).
A table the node refuses to start with (a count that does not fit) is a BadInputError naming file and key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cp_debug.errors import BadInputError

_WRAPPER = "ros__parameters"


@dataclass(frozen=True)
class AutowareNode:
    """One Autoware node as its parameter files show it: its `name` (as messages say it) and the first components of
    what it declares (`groups`): a file holding none of them is not that node's parameter file. Each recipe's node is
    a table of its folder (CenterPoint's in `recipes/centerpoint/lint_sources.py`)."""

    name: str
    groups: frozenset[str]


@dataclass(frozen=True)
class Param:
    """One parameter's value and where it was read (`file:dotted.key`)."""

    value: Any
    where: str


@dataclass(frozen=True)
class ScoreThresholds:
    """The node's score thresholds as it decodes them: `table[c][b]` is class c's threshold within distance bin b
    (bins end at `upper_bounds`, from 0 m; one bin of +inf for the layouts without bins). `layout` names which of
    the five layouts the file used; `clamped` the values outside [0, 1) that the node reads as 0."""

    upper_bounds: tuple[float, ...]
    table: tuple[tuple[float, ...], ...]
    layout: str
    where: str
    clamped: tuple[tuple[str, float], ...] = ()

    def describe(self, class_names: Sequence[str]) -> str:
        bins = ", ".join(f"<{b:g} m" if math.isfinite(b) else "any range" for b in self.upper_bounds)
        rows = "; ".join(f"{c} {'/'.join(f'{t:g}' for t in row)}" for c, row in zip(class_names, self.table))
        return f"score ≥ per class and range ({bins}): {rows}"


@dataclass(frozen=True)
class AutowareParams:
    """The parameters the node reads that cp_debug checks or uses, each with its source; None where no file set it.
    `files` are the files read, in order; `raw` every dotted parameter read (for what is not typed here)."""

    files: tuple[Path, ...]
    raw: dict[str, Param] = field(default_factory=dict)

    def get(self, key: str) -> Param | None:
        return self.raw.get(key)

    def value(self, key: str, default: Any = None) -> Any:
        p = self.raw.get(key)
        return default if p is None else p.value

    @property
    def class_names(self) -> Param | None:
        p = self.get("model_params.class_names")
        if p is not None:
            return Param(tuple(str(c) for c in _list(p, str)), p.where)
        return None

    def ints(self, key: str) -> Param | None:
        p = self.get(key)
        return None if p is None else Param(_int(p), p.where)

    def floats(self, key: str, n: int | None = None) -> Param | None:
        p = self.get(key)
        return None if p is None else Param(tuple(float(v) for v in _list(p, float, n)), p.where)

    def flag(self, key: str) -> Param | None:
        p = self.get(key)
        if p is None:
            return None
        if not isinstance(p.value, bool):
            raise BadInputError(f"{p.where} = {p.value!r} must be true or false")
        return p

    def number(self, key: str) -> Param | None:
        p = self.get(key)
        if p is None:
            return None
        if isinstance(p.value, bool) or not isinstance(p.value, (int, float)):
            raise BadInputError(f"{p.where} = {p.value!r} must be a number")
        return Param(float(p.value), p.where)

    @property
    def encoder_onnx(self) -> Param | None:
        return self.get("encoder_onnx_path")

    @property
    def head_onnx(self) -> Param | None:
        return self.get("head_onnx_path")

    def score_thresholds(self) -> ScoreThresholds | None:
        """The thresholds in whichever layout the files used (the newest layout wins where several are set)."""
        names = self.class_names
        return _score_thresholds(self.raw, names.value if names is not None else None)

    def yaw_norm_thresholds(self) -> Param | None:
        """Per class; the manifest moved them from post_process_params to model_params."""
        for key in ("model_params.yaw_norm_thresholds", "post_process_params.yaw_norm_thresholds"):
            p = self.floats(key)
            if p is not None:
                return p
        return None


def read_params(paths: Sequence[str | Path], node: AutowareNode | None = None) -> AutowareParams:
    """Read the files in order (later keys replace earlier ones); with `node` (the recipe's), each must hold ROS 2
    parameters of that node's."""
    raw: dict[str, Param] = {}
    files = []
    for path in paths:
        path = Path(path)
        files.append(path)
        params = file_parameters(path)
        if node is not None and not {k.split(".")[0] for k in params} & node.groups:
            raise BadInputError(f"{path}: none of the parameters Autoware's {node.name} node reads "
                                f"({', '.join(sorted(node.groups))}): is it the node's *.param.yaml?")
        for key, value in params.items():
            raw[key] = Param(value, f"{path.name}:{key}")
    return AutowareParams(tuple(files), raw)



def is_param_file(path: Path) -> bool:
    """A ROS 2 parameter file by name (`*.param.yaml`, as Autoware names them)."""
    return path.is_file() and path.name.endswith(".param.yaml")


def file_parameters(path: Path) -> dict[str, Any]:
    """The dotted parameters of one file: the `ros__parameters` of every node entry (`/**`, `/**/name`, `name`),
    or the file itself where it has no such wrapper. Any node's file (TransFusion-L's too:
    `recipes/transfusion/detections.read_node_params`)."""
    from cp_debug.imports import optional

    yaml = optional("yaml", "reading Autoware parameter files needs PyYAML: pip install 'cp-debug[autoware]'",
                    label="PyYAML", error=BadInputError)
    try:
        text = path.read_text()
    except OSError as err:
        raise BadInputError(f"{path}: cannot read ({err.strerror or err})") from err
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise BadInputError(f"{path}: not YAML{at}: {str(getattr(err, 'problem', err)).strip()}") from err
    if not isinstance(doc, dict) or not doc:
        raise BadInputError(f"{path}: not a ROS 2 parameter file (expected '/**: ros__parameters: …')")
    out: dict[str, Any] = {}
    wrapped = [v[_WRAPPER] for v in doc.values() if isinstance(v, dict) and _WRAPPER in v]
    if _WRAPPER in doc:
        wrapped.append(doc[_WRAPPER])
    for params in wrapped or [doc]:
        if not isinstance(params, dict):
            raise BadInputError(f"{path}: {_WRAPPER} must be a mapping of parameters, not {params!r}")
        _flatten(params, "", out)
    return out


def _flatten(node: dict, prefix: str, out: dict[str, Any]) -> None:
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            _flatten(value, name + ".", out)
        else:
            out[name] = value


def _list(p: Param, kind: type, n: int | None = None) -> list:
    v = p.value
    if not isinstance(v, list) or (n is not None and len(v) != n) or any(isinstance(x, (dict, list)) for x in v):
        size = f" of {n}" if n is not None else ""
        raise BadInputError(f"{p.where} = {v!r} must be a list{size} of {'names' if kind is str else 'numbers'}")
    if kind is float and any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v):
        raise BadInputError(f"{p.where} = {v!r} must be a list of numbers")
    return v


def _int(p: Param) -> int:
    if isinstance(p.value, bool) or not isinstance(p.value, int):
        raise BadInputError(f"{p.where} = {p.value!r} must be an integer")
    return int(p.value)


def _clamp(values: list[tuple[str, float]]) -> tuple[tuple[float, ...], tuple[tuple[str, float], ...]]:
    """The node's reading of thresholds: anything outside [0, 1) becomes 0 (CenterPointConfig)."""
    kept = tuple(v if 0.0 <= v < 1.0 else 0.0 for _, v in values)
    return kept, tuple((w, v) for w, v in values if not 0.0 <= v < 1.0)


def _score_thresholds(raw: dict[str, Param], class_names: Sequence[str] | None) -> ScoreThresholds | None:
    manifest = "model_params.detection_score_thresholds"
    binned = "model_params.score_thresholds"
    if f"{manifest}.distance_bin_upper_limits" in raw:
        return _per_class_bins(raw, f"{manifest}.distance_bin_upper_limits", f"{manifest}.min_confidence_scores",
                               class_names, "manifest per class and distance bin")
    if f"{binned}.upper_bounds" in raw:
        if f"{binned}.thresholds" in raw:  # one flat list, a row of classes per bin
            bounds = _bounds(raw[f"{binned}.upper_bounds"])
            p = raw[f"{binned}.thresholds"]
            flat = _list(p, float)
            names = _need_names(class_names, p)
            if len(flat) != len(names) * len(bounds):
                raise BadInputError(f"{p.where} has {len(flat)} values but {len(names)} classes × {len(bounds)} "
                                    "upper_bounds need one per class and bin (the node refuses to start)")
            cells = [(f"{p.where}[{b * len(names) + c}]", float(flat[b * len(names) + c]))
                     for c in range(len(names)) for b in range(len(bounds))]
            return _table(bounds, cells, len(bounds), "flat list per distance bin", p.where)
        return _per_class_bins(raw, f"{binned}.upper_bounds", f"{binned}.thresholds", class_names,
                               "per class and distance bin")
    if "post_process_params.score_thresholds" in raw:
        p = raw["post_process_params.score_thresholds"]
        values = _list(p, float)
        names = _need_names(class_names, p)
        if len(values) != len(names):
            raise BadInputError(f"{p.where} has {len(values)} values for {len(names)} classes (one per class)")
        return _table((math.inf,), [(f"{p.where}[{i}]", float(v)) for i, v in enumerate(values)], 1, "per class",
                      p.where)
    if "post_process_params.score_threshold" in raw:
        p = raw["post_process_params.score_threshold"]
        if isinstance(p.value, bool) or not isinstance(p.value, (int, float)):
            raise BadInputError(f"{p.where} = {p.value!r} must be a number")
        n = len(class_names) if class_names else 1
        return _table((math.inf,), [(p.where, float(p.value))] * n, 1, "one threshold", p.where)
    return None


def _bounds(p: Param) -> tuple[float, ...]:
    bounds = tuple(float(v) for v in _list(p, float))
    if not bounds:
        raise BadInputError(f"{p.where} is empty: the node needs at least one upper bound (it refuses to start)")
    return bounds


def _need_names(class_names: Sequence[str] | None, p: Param) -> Sequence[str]:
    if not class_names:
        raise BadInputError(f"{p.where} needs model_params.class_names to be read (give the file that sets it)")
    return class_names


def _per_class_bins(raw: dict[str, Param], bounds_key: str, prefix: str, class_names: Sequence[str] | None,
                    layout: str) -> ScoreThresholds:
    bounds_p = raw[bounds_key]
    bounds = _bounds(bounds_p)
    names = _need_names(class_names, bounds_p)
    cells = []
    for name in names:
        p = raw.get(f"{prefix}.{name}")
        if p is None:
            given = sorted(k[len(prefix) + 1:] for k in raw if k.startswith(prefix + "."))
            raise BadInputError(f"{bounds_p.where.split(':')[0]}:{prefix}.{name} is missing: every class of "
                                f"model_params.class_names needs its thresholds (given: {', '.join(given) or 'none'}; "
                                "the node refuses to start)")
        values = _list(p, float)
        if len(values) != len(bounds):
            raise BadInputError(f"{p.where} has {len(values)} values but {bounds_p.where} has {len(bounds)} "
                                "(the node refuses to start)")
        cells += [(f"{p.where}[{i}]", float(v)) for i, v in enumerate(values)]
    return _table(bounds, cells, len(bounds), layout, bounds_p.where.split(":")[0] + ":" + prefix)


def _table(bounds: tuple[float, ...], cells: list[tuple[str, float]], per_class: int, layout: str,
           where: str) -> ScoreThresholds:
    kept, clamped = _clamp(cells)
    rows = tuple(tuple(kept[i:i + per_class]) for i in range(0, len(kept), per_class))
    return ScoreThresholds(bounds, rows, layout, where, clamped)
