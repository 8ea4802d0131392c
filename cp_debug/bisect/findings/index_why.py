"""An index that rounds the other way is named as the index, not as a layer's rounding (issue 84, item 5).

A float value that becomes an integer — a Cast to an integer type (truncation toward zero), a Floor (`x // 2` on
floats exports as Div + Floor in both exporters), a Ceil, a Round — or a coordinate that picks a source element
(GridSample in nearest mode rounds its unnormalised coordinate) turns a rounding-sized error into a whole step: the
reference's 2.99997 truncates to 2, the same value stored in float16 is 3.0 and truncates to 3. The root cause was
named at the upstream layer whose FP16 output carried the rounding ("FP16 rounding introduced by this layer").

Two places are read, from the data. As for a decision flip (`flip_why.py`): where the first divergent probe's segment
holds such an op, computes well on the reference's own boundary values (its local error within the precision) and
badly on the candidate's, the rounding flowed in; the reference's values at the op count where the format's own
rounding of them gives another integer ("crossed"), else where they lie within one rounding step of the boundary
(an integer; a half-integer for Round and nearest coordinates). Where the root cause's segment makes the index itself
(its local error beyond: a Round computing in float16 with the model, a grid rounded at the segment's input), only
values that cross count, and the integers the candidate's run of the segment makes must differ from the FP32 run's.
Values already whole at the op (a Cast after a Floor) and shape arithmetic cross nothing and are not read. INT8
counts the values within its calibrated step (amax / 127) of the boundary. None of these: no finding.

A nearest Resize computes its source coordinates from float32 scales in FP32 whatever its data's type (the FP16
conversion keeps the scales and their arithmetic in FP32), so in FP16 it takes the same source indices; an export's
other index convention, or an integer Div truncating where PyTorch floors, is `export_why.py`'s finding, at any
precision. A nearest Resize whose coordinates the network computes — a crop-and-resize's box (`roi`, TensorFlow's
`tf_crop_and_resize`, float16 in the converted graph), or scales computed from data — is read as the grid is (issue
115): each output row's and column's source coordinate from the reference's roi / scales and from them rounded to
the format, against the nearest mode's boundary (a half-integer; an integer for `floor` / `ceil`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cp_debug.backends.spec import Capability
from cp_debug.bisect.findings.flip_why import rounding_step, stored
from cp_debug.bisect.ranking import beyond_locally
from cp_debug.graph.plan import node_attr
from cp_debug.bisect.run_state import CandidateState, RunState
from cp_debug.compare.diff import BROKEN

INDEX_OPS = ("Cast", "Floor", "Ceil", "Round", "GridSample", "Resize")
_COORDS = ("GridSample", "Resize")  # ops whose index is a source coordinate: counted per output point
_INT_TYPES = {2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 12: "uint32", 13: "uint64"}
_FORMAT = {"fp16": "float16", "bf16": "bfloat16", "int8": "int8"}
_VERB = {"Cast": "truncate", "Floor": "floor", "Ceil": "ceil", "Round": "round"}


@dataclass(frozen=True)
class IndexFlip:
    """An op in the first divergent probe's segment that makes an integer (or a source index) of values the
    candidate's format rounds across its boundary (see the module docstring)."""

    probe: str  # the probe whose segment holds the op
    node: str
    what: str  # "Cast to int64", "Floor", "GridSample (nearest)", "Resize (nearest, tf_crop_and_resize)"
    module: str | None
    crossed: int  # values (output points for GridSample) whose own rounding to the format gives another integer
    near: int  # values within one rounding step of the boundary
    size: int
    value: float  # the reference's value (coordinate) nearest the boundary among those counted
    rounded: float  # that value rounded to the format (its coordinate from the rounded grid)
    boundary: float
    step: float  # the format's rounding step there
    precision: str
    keep: tuple[str, ...] = ()  # a Resize: it and the nodes computing its roi / scales, kept in FP32 together
    cured: float | None = None  # the outputs' error ÷ budget with `keep` kept, where tried
    back: bool | None = None
    # (`restore.Restoration`, `restore.OutputError`) of `keep` run to the outputs: the intervention takes it in
    at_outputs: tuple | None = field(default=None, compare=False)

    def text(self) -> str:
        where = f"{self.module}: " if self.module else ""
        fmt = _FORMAT[self.precision]
        gap = abs(self.value - self.boundary)
        if self.what.startswith(_COORDS):
            grid = self.what.startswith("GridSample")
            head = f"{self.crossed or self.near} of {self.size} output {'pixels' if grid else 'rows and columns'}"
            by = "the grid" if grid else "its " + ("roi" if "crop" in self.what else "scales")
            if self.crossed:
                pick = (np.rint if grid else _nearest(self.what))
                how = (f"{head} take a different source index once {by} is rounded to {fmt}: the reference's "
                       f"source coordinate {self.value:.6g} becomes {self.rounded:.6g} (the step there "
                       f"{self.step:.3g}), index {pick(self.rounded):g} instead of {pick(self.value):g}")
            else:
                how = (f"{head} have a source coordinate within {fmt}'s rounding step ({self.step:.3g}) of a "
                       f"boundary (closest {self.value:.6g}, {gap:.2g} from {self.boundary:g}): the rounding that "
                       "flowed in picks the other source pixel")
        else:
            op = self.what.split()[0]
            if self.crossed:
                how = (f"{self.crossed} of {self.size} values {_VERB[op]} differently: the reference value "
                       f"{self.value:.6g} rounds to {self.rounded:.6g} in {fmt} (step {self.step:.3g}), which gives "
                       f"{_OPS[op](self.rounded):g} instead of {_OPS[op](self.value):g}")
            else:
                step = "calibrated step (amax / 127: " if self.precision == "int8" else "rounding step ("
                how = (f"{self.near} of {self.size} reference values lie within {fmt}'s {step}{self.step:.3g}) of "
                       f"{self.boundary:g} (closest {self.value:.6g}, {gap:.2g} away): the rounding that flowed in "
                       "moves them across")
        return (f"index flip at {where}{self.what} {self.node!r}: {how} — a rounding-sized error made a whole "
                "index step, and everything after it differs; not a layer's rounding" + self._kept())

    def _kept(self) -> str:
        if not self.keep:
            return ""
        nodes = ", ".join(self.keep)
        if self.back is None:
            return f"; keep {nodes} in FP32 together (the Resize casts its roi to the format where it is not)"
        if self.back:
            return (f"; verified at the outputs: keeping {nodes} in FP32 together brings them back "
                    f"({self.cured:.3g}× their budget)")
        return f"; keeping {nodes} in FP32 together does not bring the outputs back ({self.cured:.3g}×)"


def index_flip(run: RunState, state: CandidateState, fd: str | None, rc: str | None) -> IndexFlip | None:
    """The index flip in the first divergent probe's segment where rounding flowed into it (its local error within
    the precision: values within a step count), else in the root cause's where the segment makes it itself (its
    local error beyond, no NaN/Inf: only values whose own rounding crosses count); None where neither shows one."""
    if (state.judged_at or state.spec.precision) not in _FORMAT:
        return None
    for probe, flowed_in in ((fd, True), (rc, False)):
        r = state.results.get(probe) if probe else None
        if r is None or r.local is None or r.local.status in BROKEN or beyond_locally(r) == flowed_in:
            continue
        found = _in_segment(run, state, probe, crossed_only=not flowed_in)
        if found is not None:
            return found
    return None


def _in_segment(run: RunState, state: CandidateState, probe: str, crossed_only: bool) -> IndexFlip | None:
    from cp_debug.bisect.findings.op_findings import named_module
    from cp_debug.bisect.findings.segment_why import root_segment, run_segment

    precision = state.judged_at or state.spec.precision
    i = run.probes[probe].stage
    graph = run.stage_of(state.label, i).onnx().graph
    made = _data_indices(graph)
    if not made:
        return None  # nothing makes an index of the data in the stage: no segment cut (in lockstep, a reference run)
    rs = root_segment(run, state, i, probe, whole=crossed_only)  # its own error: as it ran, children inside
    if rs is None:
        return None
    nodes = [n for n in rs.model.graph.node if n.name in made]
    wanted = [_index_input(n) for n in nodes]
    shapes = [t for n in nodes if n.op_type == "Resize" for t in (n.input[0], n.output[0])]  # its sizes, in and out
    asked = [t for t in dict.fromkeys(wanted + shapes) if t not in rs.feed]
    ref = {**rs.feed, **(run_segment(run, "ort", rs.model, rs.feed, asked).values if asked else {})}
    for node, t in zip(nodes, wanted):
        x = ref.get(t)
        fmt = _Format.of(precision, graph, t, state.int8_amax)
        if fmt is None or x is None or not np.issubdtype(np.asarray(x).dtype, np.floating) or not np.asarray(x).size:
            continue
        found = (_grid(node, ref.get(node.input[0]), np.asarray(x), fmt) if node.op_type == "GridSample"
                 else _resize(node, ref.get(node.input[0]), ref.get(node.output[0]), np.asarray(x), fmt)
                 if node.op_type == "Resize" else _values(node, np.asarray(x), fmt))
        if found is None or (crossed_only and not (found[0] and _differs(run, rs, node))):
            continue
        flip = IndexFlip(probe, node.name, _what(node), named_module(node, rs.named), *found, precision)
        return _with_keep(run, state, i, probe, graph, node, flip) if node.op_type == "Resize" else flip
    return None


_KEEP_AT_MOST = 24  # nodes of a Resize's roi / scales computation kept in FP32 together


def _with_keep(run: RunState, state: CandidateState, stage: int, probe: str, graph, node, flip: IndexFlip
               ) -> IndexFlip:
    """`flip` (a Resize's) with its keep set — the Resize and every node that computes its roi / scales from the
    graph's inputs — tried at the outputs (`cures/restore.py`) where the candidate is a built-in FP16 / BF16
    conversion: the format's rounding anywhere on that road moves the coordinate, and the Resize casts its roi to
    the format where it is not kept."""
    from dataclasses import replace

    from cp_debug.bisect.cures.restore import KEEP, Restoration, output_error, run_restored

    writer = {t: n for n in graph.node for t in n.output if t}
    keep, front = [node.name], [_index_input(node)]
    while front and len(keep) <= _KEEP_AT_MOST:
        n = writer.get(front.pop())
        if n is None or n.name in keep:
            continue
        keep.append(n.name)
        front += [x for x in n.input if x]
    if len(keep) > _KEEP_AT_MOST or flip.precision not in ("fp16", "bf16"):
        return flip
    order = {n.name: k for k, n in enumerate(graph.node)}
    keep = sorted(keep, key=order.get)
    if not (state.spec.runs_onnx and state.spec.onnx_dir is None):
        return replace(flip, keep=tuple(keep))
    r = Restoration(probe, stage, KEEP, nodes=tuple(keep), source="the index flip's keep set")
    err = output_error(run, state, stage, run_restored(run, state, stage, [r]))
    return replace(flip, keep=tuple(keep), cured=err.ratio, back=err.back, at_outputs=(r, err))


def _differs(run: RunState, rs, node) -> bool:
    """Where the segment makes the index itself (its root cause's case): the integers it makes, run as ONNX
    Runtime runs the candidate, differ from the FP32 run's on the same boundary values. GridSample's output is
    data, not an index (its count stands on the coordinates); a candidate ONNX Runtime does not run is not
    re-run here."""
    from cp_debug.bisect.findings.segment_why import run_segment

    if node.op_type in _COORDS or not rs.spec.can(Capability.ORT_SESSIONS):
        return True
    t = node.output[0]
    ref = run_segment(run, "ort", rs.model, rs.feed, [t]).values.get(t)
    got = run_segment(run, str(rs.spec), rs.model, rs.feed, [t], spec=rs.spec).values.get(t)
    return ref is not None and got is not None and ref.shape == got.shape and bool((ref != got).any())


# ops that hand on their input's values unchanged (a selection, a clamp, a new shape): an int8 value keeps its step
_SAME_VALUES = ("Slice", "Gather", "Clip", "Relu", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Transpose",
                "Identity", "Expand")


@dataclass(frozen=True)
class _Format:
    """How the candidate stores a value: float16 / bfloat16, or int8 at the calibrated scale of the tensor the value
    was quantized at — the index op's input, or the tensor it is selected, clamped, shifted by a constant (a bias
    added after the quantized MatMul) or scaled by a constant from. Through a constant shift the int8 grid's offset
    is not known here: only its step, so int8 counts the values within a step of the boundary, never "crossed"."""

    precision: str
    scale: float | None = None

    @classmethod
    def of(cls, precision: str, graph, tensor: str, amax: dict) -> "_Format | None":
        if precision != "int8":
            return cls(precision)
        producer = {t: n for n in graph.node for t in n.output if t}
        factor = 1.0
        while amax.get(tensor, 0) <= 0 and tensor in producer:
            node = producer[tensor]
            const = [_constant(graph, producer, t) for t in node.input[:2]]
            if node.op_type in _SAME_VALUES:
                tensor = node.input[0]
            elif node.op_type in ("Add", "Sub") and len(node.input) == 2 and (const[0] is None) != (const[1] is None):
                tensor = node.input[0] if const[1] is not None else node.input[1]
            elif node.op_type in ("Mul", "Div") and const[0] is None and const[1] is not None and const[1].size == 1:
                c = abs(float(const[1].reshape(-1)[0]))
                factor, tensor = (factor * c if node.op_type == "Mul" else factor / c), node.input[0]
            else:
                return None
        return cls(precision, float(amax[tensor]) / 127 * factor) if amax.get(tensor, 0) > 0 and factor else None

    def rounded(self, x: np.ndarray) -> np.ndarray:
        """`x` (float64) as stored (`flip_why.stored`); int8's grid offset is not known here (see the class):
        nothing is said to cross."""
        return x if self.precision == "int8" else stored(x, self.precision)

    def step(self, a: np.ndarray) -> np.ndarray:
        return np.full(a.shape, self.scale) if self.precision == "int8" else rounding_step(a, self.precision)


def _constant(graph, producer: dict, name: str) -> np.ndarray | None:
    """The value of an initializer or a Constant node's output, else None."""
    from onnx import numpy_helper

    init = next((t for t in graph.initializer if t.name == name), None)
    if init is not None:
        return numpy_helper.to_array(init)
    node = producer.get(name)
    if node is not None and node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
        return numpy_helper.to_array(node.attribute[0].t)
    return None


def _data_indices(graph) -> set[str]:
    """The names of the index ops that read values computed from the graph's inputs: not shape arithmetic (a Shape
    or Size and what is computed from it alone, which no format rounds), not constants."""
    data = {t.name for t in graph.input} - {t.name for t in graph.initializer}
    found = set()
    for node in graph.node:
        if node.op_type in ("Shape", "Size") or not data & set(node.input):
            continue
        data.update(t for t in node.output if t)
        if _index_op(node) and _index_input(node) in data:
            found.add(node.name)
    return found


def _index_input(node) -> str:
    """The input an index op makes its index of: a grid, a Resize's roi (crop-and-resize) or scales, else its
    first."""
    if node.op_type == "GridSample":
        return node.input[1]
    if node.op_type == "Resize":
        crop = node_attr(node, "coordinate_transformation_mode", b"half_pixel") == b"tf_crop_and_resize"
        k = 1 if crop else 2
        return node.input[k] if len(node.input) > k else ""
    return node.input[0]


def _index_op(node) -> bool:
    if node.op_type == "Cast":
        return node_attr(node, "to") in _INT_TYPES
    if node.op_type == "GridSample":
        return node_attr(node, "mode", b"bilinear") == b"nearest" and len(node.input) > 1
    if node.op_type == "Resize":
        return node_attr(node, "mode", b"nearest") == b"nearest" and bool(_index_input(node))
    return node.op_type in INDEX_OPS


def _what(node) -> str:
    if node.op_type == "Cast":
        return f"Cast to {_INT_TYPES[node_attr(node, 'to')]}"
    if node.op_type == "Resize":
        mode = node_attr(node, "coordinate_transformation_mode", b"half_pixel").decode()
        return f"Resize (nearest, {mode}, {node_attr(node, 'nearest_mode', b'round_prefer_floor').decode()})"
    return "GridSample (nearest)" if node.op_type == "GridSample" else node.op_type


_OPS = {"Cast": np.trunc, "Floor": np.floor, "Ceil": np.ceil, "Round": np.round}  # np.round: half to even, as ONNX


def _values(node, x: np.ndarray, fmt: _Format) -> tuple | None:
    """(crossed, near, size, value, rounded, boundary, step) for an op making integers of `x`, or None where no
    value lies within a rounding step of its boundary."""
    x = x.astype(np.float64).reshape(-1)
    op = _OPS[node.op_type]
    half = 0.5 if node.op_type == "Round" else 0.0
    boundary = np.floor(x - half + 0.5) + half  # the nearest integer (half-integer for Round)
    rx = fmt.rounded(x)
    return _counted(x, rx, boundary, fmt.step(np.abs(x)), op(rx) != op(x))


def _counted(x, rx, boundary, step, crossed) -> tuple | None:
    finite = np.isfinite(x) & np.isfinite(rx)
    d = np.abs(x - boundary)
    near = finite & (d > 0) & (d <= step)
    crossed = crossed & near
    if not near.any():
        return None
    pick = crossed if crossed.any() else near
    k = int(np.flatnonzero(pick)[np.argmin(d[pick])])
    return (int(crossed.sum()), int(near.sum()), int(x.size), float(x[k]), float(rx[k]), float(boundary[k]),
            float(step[k]))


def _grid(node, data, grid: np.ndarray, fmt: _Format) -> tuple | None:
    """GridSample (nearest) on a 4-D input: per output pixel, whether the source index (x, then y) moves when the
    grid is rounded to the format, and whether its coordinate lies within the rounding step (the grid's step times
    the unnormalising scale) of a half-integer. Counts are of output pixels; the value is a coordinate."""
    if data is None or np.asarray(data).ndim != 4 or grid.ndim != 4 or grid.shape[-1] != 2:
        return None
    sizes = (data.shape[3], data.shape[2])  # grid[..., 0] indexes the width, grid[..., 1] the height
    corners = bool(node_attr(node, "align_corners", 0))
    g = grid.astype(np.float64)
    rg = fmt.rounded(g)
    coords, rcoords, steps = [], [], []
    for ax, n in enumerate(sizes):
        scale = (n - 1) / 2 if corners else n / 2  # x = ((g + 1) · n - 1) / 2, or (g + 1) / 2 · (n - 1)
        coords.append(g[..., ax] * scale + (n - 1) / 2)
        rcoords.append(rg[..., ax] * scale + (n - 1) / 2)
        steps.append(fmt.step(np.abs(g[..., ax])) * scale)
    c, rc, st = (np.stack(v, -1).reshape(-1, 2) for v in (coords, rcoords, steps))
    boundary = np.floor(c) + 0.5
    d = np.abs(c - boundary)
    near_ax = (d > 0) & (d <= st) & np.isfinite(c)
    crossed_ax = np.rint(rc) != np.rint(c)  # nearbyint: half to even, as ONNX Runtime's nearest
    axis = np.where(near_ax[:, 0] & (~near_ax[:, 1] | (d[:, 0] <= d[:, 1])), 0, 1)  # each pixel's closer axis
    rows = np.arange(c.shape[0])
    return _counted(c[rows, axis], rc[rows, axis], boundary[rows, axis], st[rows, axis],
                    crossed_ax[rows, axis] | crossed_ax[rows, 1 - axis])


def _nearest(what: str):
    """The source index a Resize's nearest mode (read from `_what`'s words) takes of a coordinate."""
    if "round_prefer_ceil" in what:
        return lambda x: np.floor(x + 0.5)
    if what.endswith(", floor)"):
        return np.floor
    if what.endswith(", ceil)"):
        return np.ceil
    return lambda x: np.ceil(x - 0.5)  # round_prefer_floor, ONNX's default


def _resize(node, data, out, coords: np.ndarray, fmt: _Format) -> tuple | None:
    """A nearest Resize whose roi (crop-and-resize) or scales (`coords`) the network computes: per output row and
    column of its spatial axes, whether the source index moves when `coords` is rounded to the format, and whether
    the coordinate lies within the shift that rounding makes of the nearest mode's boundary. Counts are of output
    coordinates; the value is a coordinate."""
    if data is None or out is None or np.ndim(data) != np.ndim(out) or np.ndim(data) < 1:
        return None
    mode = node_attr(node, "coordinate_transformation_mode", b"half_pixel").decode()
    what = _what(node)
    pick = _nearest(what)
    half = 0.0 if what.endswith((", floor)", ", ceil)")) else 0.5
    n = np.ndim(data)
    v = coords.astype(np.float64).reshape(-1)
    rv = fmt.rounded(v)
    if (mode == "tf_crop_and_resize" and v.size != 2 * n) or (mode != "tf_crop_and_resize" and v.size != n):
        return None
    up = v + fmt.step(np.abs(v))  # each roi / scale a rounding step up: how far the format can move a coordinate
    cs, rcs, ups = [], [], []
    for ax in range(n):
        lin, lout = np.shape(data)[ax], np.shape(out)[ax]
        if (lin == lout and mode != "tf_crop_and_resize") or lin == lout == 1:
            continue
        k = np.arange(lout, dtype=np.float64)
        for src, dst in ((v, cs), (rv, rcs), (up, ups)):
            dst.append(_source(mode, k, lin, lout, src, ax, n))
    if not cs:
        return None
    c, rc, uc = np.concatenate(cs), np.concatenate(rcs), np.concatenate(ups)
    boundary = np.floor(c - half) + half if half else np.rint(c)
    shift = np.maximum(np.abs(rc - c), np.abs(uc - c))
    return _counted(c, rc, boundary, shift, pick(rc) != pick(c))


def _source(mode: str, k: np.ndarray, lin: int, lout: int, v: np.ndarray, ax: int, n: int) -> np.ndarray:
    """ONNX Resize's source coordinate of output positions `k` on axis `ax` (its roi or scales `v`)."""
    if mode == "tf_crop_and_resize":
        start, end = v[ax], v[ax + n]
        if lout == 1:
            return np.full(k.shape, 0.5 * (start + end) * (lin - 1))
        return start * (lin - 1) + k * (end - start) * (lin - 1) / (lout - 1)
    scale = v[ax]
    if mode == "align_corners":
        return k * (lin - 1) / (lout - 1) if lout > 1 else np.zeros(k.shape)
    if mode == "asymmetric":
        return k / scale
    if mode == "pytorch_half_pixel" and lout == 1:
        return np.zeros(k.shape)
    return (k + 0.5) / scale - 0.5  # half_pixel, pytorch_half_pixel
