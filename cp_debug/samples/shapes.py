"""Shapes as TensorRT writes them, and inputs made at any shape of a declared range.

`parse_shapes` reads trtexec's spelling of `--minShapes` / `--optShapes` / `--maxShapes` (`NAME:DxDxD`, comma-separated
for several inputs, a name holding ':' or ',' in single quotes: `'input:0':1x3x224x224`; a repeated option's texts
read as one); `parse_profile` reads a min / opt / max triple into the optimization profile `backends/trt/trt_profile.py`
writes back out (`trtexec_shape_flags`), so what a user copies from a trtexec line is read here and written there the
same way. The one reader of that spelling: the sweep's and fix's `--min-shapes` / `--max-shapes` and the kit's
`--min/--opt/--max-shapes` all read it here. `range_shapes` gives a range's corners and its midpoint (what fix
verifies at), `range_samples` samples made there.

`shape_space` checks a profile against a graph's inputs and names the dynamic axes to search: an axis the file holds
static takes only its own size (one line, exit 2), a dynamic one the profile leaves out is one line too, and the
axes that share a symbol (`seq` of `input_ids` and of `attention_mask`) move together as one. `ShapedInputs` makes a
feed at any shape of the space: floats standard normal from `--seed` (the generator and seed of `cpdebug bisect
--onnx`'s synthetic inputs), integers uniform below the rows of the table a Gather reads them into (token ids below
the vocabulary), else in [0, 2); drawn once at the max shapes, each shape being their leading block, so a larger shape
holds every smaller one's values and a search along an axis compares like with like.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cp_debug.backends.trt.trt_profile import Profile, ShapeRange, shape_text
from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    import onnx

    from cp_debug.samples.sets import GraphInputs, Sample

SPELLING = "trtexec's spelling is NAME:DxDxD, comma-separated for several inputs (e.g. input_ids:1x64)"
Shapes = Mapping[str, tuple[int, ...]]  # input name -> its shape


def parse_shapes(text: str | Sequence[str], option: str = "--min-shapes") -> dict[str, tuple[int, ...]]:
    """`NAME:DxDxD[,NAME:DxD…]` as trtexec takes it -> {name: shape} (`text` a list: a repeated option's texts, read
    as one joined by ','); a bad spelling is one BadInputError line."""
    if not isinstance(text, str):
        text = ",".join(t.strip() for t in text if t and t.strip())
    if not text or not text.strip():
        raise BadInputError(f"{option} is empty: {SPELLING}")
    out: dict[str, tuple[int, ...]] = {}
    for item in _items(text, option):
        name, dims = _name_and_dims(item, option)
        if name in out:
            raise BadInputError(f"{option} names input {name!r} twice: {SPELLING}")
        out[name] = dims
    return out


def _items(text: str, option: str) -> list[str]:
    """`text` cut at the commas outside single quotes."""
    items, cur, quoted = [], "", False
    for ch in text.strip():
        if ch == "'":
            quoted = not quoted
        if ch == "," and not quoted:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    if quoted:
        raise BadInputError(f"{option} {text!r}: a quote is not closed: {SPELLING}")
    return [*items, cur]


def _name_and_dims(item: str, option: str) -> tuple[str, tuple[int, ...]]:
    item = item.strip()
    if item.startswith("'"):
        end = item.find("'", 1)
        name, rest = item[1:end], item[end + 1:]
        if not rest.startswith(":"):
            raise BadInputError(f"{option} {item!r}: no ':' after the quoted name: {SPELLING}")
        dims_text = rest[1:]
    else:
        name, colon, dims_text = item.partition(":")
        if not colon:
            raise BadInputError(f"{option} {item!r}: no ':' between the input's name and its shape: {SPELLING}")
    if not name:
        raise BadInputError(f"{option} {item!r}: no input name before ':': {SPELLING}")
    parts = dims_text.strip().split("x")
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        quote = " (a name holding ':' is quoted: 'input:0':1x3)" if ":" in dims_text else ""
        raise BadInputError(f"{option} {item!r}: the shape {dims_text!r} is not positive integers joined by "
                            f"'x'{quote}: {SPELLING}")
    return name, tuple(int(p) for p in parts)


def parse_profile(min_text: str, max_text: str, opt_text: str | None = None,
                  options: Sequence[str] = ("--min-shapes", "--max-shapes", "--opt-shapes")) -> Profile:
    """A min / max (/ opt: else the max) triple in trtexec's spelling -> {input: ShapeRange}: the same inputs in each,
    of one rank, min <= opt <= max on every axis; each fault one BadInputError line."""
    lo, hi = parse_shapes(min_text, options[0]), parse_shapes(max_text, options[1])
    opt = parse_shapes(opt_text, options[2]) if opt_text is not None else hi
    for given, option in ((hi, options[1]), (opt, options[2])):
        if set(given) != set(lo):
            odd = sorted(set(given) ^ set(lo))
            raise BadInputError(f"{options[0]} and {option} name other inputs ({', '.join(odd)} in one only): give "
                                "every input in each")
    prof: Profile = {}
    for name in lo:
        if not len(lo[name]) == len(hi[name]) == len(opt[name]):
            raise BadInputError(f"input {name!r} has {len(lo[name])} axes in {options[0]} ({shape_text(lo[name])}) "
                                f"and {len(hi[name])} in {options[1]} ({shape_text(hi[name])}): one rank in each")
        if any(not a <= o <= b for a, o, b in zip(lo[name], opt[name], hi[name])):
            raise BadInputError(f"input {name!r}: {options[0]} {shape_text(lo[name])} is not at most "
                                f"{options[1]} {shape_text(hi[name])} on every axis (opt between them)")
        prof[name] = ShapeRange(lo[name], opt[name], hi[name])
    return prof


@dataclass(frozen=True)
class Axis:
    """One dynamic axis of the search: the (input, axis) pairs it sizes (those sharing its symbol), its range and
    its name (the symbol, else `input[axis]`)."""

    members: tuple[tuple[str, int], ...]
    lo: int
    hi: int
    name: str

    def to_json(self) -> dict:
        return {"name": self.name, "inputs": [{"input": n, "axis": a} for n, a in self.members], "min": self.lo,
                "max": self.hi}


@dataclass(frozen=True)
class ShapeSpace:
    """Every input's shape at the min corner, and the axes that move (min < max): a point is one size an axis."""

    min_shapes: Mapping[str, tuple[int, ...]]
    axes: tuple[Axis, ...]

    @property
    def lo(self) -> tuple[int, ...]:
        return tuple(a.lo for a in self.axes)

    @property
    def hi(self) -> tuple[int, ...]:
        return tuple(a.hi for a in self.axes)

    def shapes(self, point: Sequence[int]) -> dict[str, tuple[int, ...]]:
        """Every input's shape at `point` (one size an axis, in `axes`' order)."""
        out = {n: list(s) for n, s in self.min_shapes.items()}
        for ax, size in zip(self.axes, point):
            for name, k in ax.members:
                out[name][k] = int(size)
        return {n: tuple(s) for n, s in out.items()}

    def token(self, point: Sequence[int]) -> str:
        """The point as a sample's name: `input_ids=1x1598`, inputs joined by ','."""
        return ",".join(f"{n}={shape_text(s)}" for n, s in self.shapes(point).items())


def shape_space(profile: Profile, graph: "GraphInputs", symbols: Mapping[str, Sequence[str | None]] | None = None,
                options: Sequence[str] = ("--min-shapes", "--max-shapes")) -> ShapeSpace:
    """The profile's search space on `graph`'s inputs (`symbols`: each input's dim names, None where unnamed);
    what does not fit the graph is one BadInputError line."""
    symbols = symbols or {}
    unknown = [n for n in profile if n not in graph.names]
    if unknown:
        raise BadInputError(f"{options[0]} names {', '.join(map(repr, unknown))}, which {graph.what} does not take "
                            f"(its inputs: {', '.join(graph.names)})")
    min_shapes: dict[str, tuple[int, ...]] = {}
    tied: dict[str, list] = {}  # axis name -> [(input, axis, lo, hi)]
    for name in graph.names:
        dims = tuple(graph.shapes.get(name) or ())
        if name not in profile:
            if any(d is None for d in dims):
                raise BadInputError(f"input {name!r} of {graph.what} has dynamic dims {_dims_text(dims)}: give its "
                                    f"range in {options[0]} / {options[1]} too")
            min_shapes[name] = dims
            continue
        r = profile[name]
        if dims and len(dims) != len(r.min):
            raise BadInputError(f"input {name!r} of {graph.what} has {len(dims)} axes {_dims_text(dims)}; "
                                f"{options[0]} gives {len(r.min)} ({shape_text(r.min)})")
        for k, (lo, hi) in enumerate(zip(r.min, r.max)):
            if dims and dims[k] is not None and (lo, hi) != (dims[k], dims[k]):
                raise BadInputError(f"input {name!r} axis {k} is {dims[k]} in {graph.what} (static): {options[0]} "
                                    f"/ {options[1]} say {lo} / {hi}; a static axis takes only its own size")
            if lo != hi:
                sym = (list(symbols.get(name) or ()) + [None] * (k + 1))[k]
                tied.setdefault(sym or f"{name}[{k}]", []).append((name, k, lo, hi))
        min_shapes[name] = tuple(r.min)
    axes = []
    for sym, members in tied.items():
        ranges = {(lo, hi) for _, _, lo, hi in members}
        if len(ranges) > 1:
            said = ", ".join(f"{n}[{k}] {lo}..{hi}" for n, k, lo, hi in members)
            raise BadInputError(f"the axes of {sym!r} move together ({said}): give them one range")
        (lo, hi), = ranges
        axes.append(Axis(tuple((n, k) for n, k, _, _ in members), lo, hi, sym))
    return ShapeSpace(min_shapes, tuple(axes))


def _dims_text(dims: Sequence[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]" if dims else "(no shape)"


def dim_symbols(model: "onnx.ModelProto") -> dict[str, tuple[str | None, ...]]:
    """Each graph input's dim names (`seq`), None where a dim has none."""
    out = {}
    for i in model.graph.input:
        tt = i.type.tensor_type
        out[i.name] = tuple(d.dim_param or None for d in tt.shape.dim) if tt.HasField("shape") else ()
    return out


def index_bounds(model: "onnx.ModelProto") -> dict[str, int]:
    """Graph input -> the rows of the smallest table a Gather reads it into (directly or through a Cast): token ids
    below the vocabulary. The tables' dims only; no weight is read."""
    inits = {t.name: tuple(t.dims) for t in model.graph.initializer}
    inputs = {i.name for i in model.graph.input} - set(inits)
    cast_of = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Cast" and n.input[0] in inputs}
    out: dict[str, int] = {}
    for n in model.graph.node:
        if n.op_type != "Gather" or len(n.input) < 2 or n.input[0] not in inits:
            continue
        source = n.input[1] if n.input[1] in inputs else cast_of.get(n.input[1])
        table = inits[n.input[0]]
        axis = next((a.i for a in n.attribute if a.name == "axis"), 0)
        if source is not None and table:
            rows = int(table[axis % len(table)])
            out[source] = min(rows, out.get(source, rows))
    return out


class ShapedInputs:
    """Seeded inputs at any shape of `space` (the module docstring says how they are drawn); nothing is drawn
    until the first feed."""

    def __init__(self, space: ShapeSpace, dtypes: Mapping[str, np.dtype], bounds: Mapping[str, int], seed: int = 0):
        self.space, self.dtypes, self.bounds, self.seed = space, dict(dtypes), dict(bounds), seed
        self._full: dict[str, np.ndarray] | None = None

    def feed(self, point: Sequence[int]) -> dict[str, np.ndarray]:
        """The feed at `point`: each input the leading block of its draw at the max shapes."""
        if self._full is None:
            rng = np.random.default_rng(self.seed)
            self._full = {n: self._draw(rng, n, s) for n, s in self.space.shapes(self.space.hi).items()}
        return {n: np.ascontiguousarray(self._full[n][tuple(slice(0, d) for d in s)])
                for n, s in self.space.shapes(point).items()}

    def _draw(self, rng, name: str, shape: tuple[int, ...]) -> np.ndarray:
        dt = np.dtype(self.dtypes[name])
        if np.issubdtype(dt, np.floating):
            return rng.standard_normal(shape).astype(dt)
        return rng.integers(0, self.bounds.get(name, 2) if dt != np.bool_ else 2, size=shape).astype(dt)

    def described(self) -> dict[str, str]:
        """Input -> how its values are drawn, in words (sweep.json's `shape_search.inputs`)."""
        out = {}
        for name in self.space.min_shapes:
            dt = np.dtype(self.dtypes[name])
            if np.issubdtype(dt, np.floating):
                out[name] = f"{dt.name}, standard normal (seed {self.seed})"
            elif name in self.bounds and dt != np.bool_:
                out[name] = f"{dt.name}, uniform in [0, {self.bounds[name]}) (the rows of the table a Gather reads)"
            else:
                out[name] = f"{dt.name}, uniform in [0, 2) (no Gather table bounds it)"
        return out


MID = "each axis the range moves at the geometric mean of its min and max"


def range_points(space: ShapeSpace) -> dict[str, tuple[int, ...]]:
    """The shapes a cure is verified at over a declared range: its `min`, its `mid` (`MID`) and its `max` (one point
    each, in the space's axes; a point twice is kept once, under its first name)."""
    mid = tuple(round(math.sqrt(a.lo * a.hi)) for a in space.axes)
    out: dict[str, tuple[int, ...]] = {}
    for name, point in (("min", space.lo), ("mid", mid), ("max", space.hi)):
        if point not in out.values():
            out[name] = tuple(point)
    return out


def range_samples(space: ShapeSpace, dtypes: Mapping[str, np.dtype], bounds: Mapping[str, int], seed: int,
                  draws: int = 2) -> list["Sample"]:
    """`draws` samples at each of `range_points`, each draw from its own seed (`seed`, `seed + 1`, …) as
    `ShapedInputs` draws: `min_1`, `min_2`, `mid_1`, … — one to search on, one to verify on at every shape."""
    from cp_debug.samples.sets import Sample

    makers = [ShapedInputs(space, dtypes, bounds, seed + k) for k in range(draws)]
    return [Sample(f"{name}_{k + 1}", made.feed(point)) for name, point in range_points(space).items()
            for k, made in enumerate(makers)]


def range_doc(inputs: ShapedInputs) -> dict:
    """fix.json's `shape_range`: the range's axes, the shapes verified at (`Sample.shape`'s words: `x[1,64,16]`),
    what `mid` is and how the inputs were drawn."""
    from cp_debug.samples.sets import shape_words

    space = inputs.space
    at = {name: shape_words(space.shapes(point)) for name, point in range_points(space).items()}
    return {"min_shapes": {n: list(s) for n, s in space.shapes(space.lo).items()},
            "max_shapes": {n: list(s) for n, s in space.shapes(space.hi).items()},
            "axes": [a.to_json() for a in space.axes], "verified_at": at, "mid": MID, "inputs": inputs.described(),
            "draws": f"<shape>_k drawn from seed {inputs.seed} + k - 1 (_1 searched, _2 held out)"}
