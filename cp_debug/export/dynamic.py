"""The dynamic axes of a model's inputs, in one place: what `--dynamic NAME:AXIS[,AXIS]` says, what a `--torch` file's
`dynamic()` returns (torch.export's `dynamic_shapes`: a dict or tuple of per-input axis specs), or what the samples'
shapes say where neither is given (`inferred`: the axes whose size differs between the example and a sample); with a
declared range (`--min-shapes` / `--max-shapes`), the axes whose size differs between its min and its max
(`of_range`), checked against what `--dynamic` or `dynamic()` declares (`with_range`).

A `DynamicAxes` is what the export takes (`torch_shapes` for the dynamo exporter, `onnx_axes` for the TorchScript one),
what the export cache keys a graph by (`key`), what a sample is checked against (`free`: None at a dynamic axis) and
what a report says (`spelled`: the option's own spelling, `x:1=seq`, which `parse_dynamic` reads back). No spec, no
change: a model without one is exported at the example's shape, as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from cp_debug.errors import BadInputError

OPTION = "--dynamic"
FROM_OPTION, FROM_FILE, FROM_SAMPLES, FROM_RANGE = "option", "dynamic()", "samples", "range"  # DynamicAxes.source
RANGE = "--min-shapes / --max-shapes"


@dataclass(frozen=True)
class Axis:
    """One dynamic axis: the input it belongs to, its index, its name (the ONNX graph's dim_param, torch's `Dim`
    name; axes of one name are one size) and the range torch.export was told, where one was."""

    input: str
    index: int
    label: str | None = None
    min: int | None = None
    max: int | None = None

    def text(self) -> str:
        """`1=seq`, or `1` where the axis has no name or its default one (`x_1`)."""
        return f"{self.index}={self.label}" if self.label and self.label != _default(self.input, self.index) \
            else str(self.index)


@dataclass(frozen=True)
class DynamicAxes:
    """The dynamic axes of a model's inputs and where they were said (`source`: FROM_OPTION, FROM_FILE, FROM_SAMPLES
    or FROM_RANGE). Falsy when it holds none: the export is static, as without it."""

    axes: tuple[Axis, ...] = ()
    source: str = FROM_OPTION

    def __bool__(self) -> bool:
        return bool(self.axes)

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(a.input for a in self.axes))

    def of(self, name: str) -> tuple[Axis, ...]:
        return tuple(a for a in self.axes if a.input == name)

    def spelled(self) -> tuple[str, ...]:
        """One `NAME:AXIS[,AXIS]` per input, as `--dynamic` takes it back."""
        return tuple(f"{n}:{','.join(a.text() for a in self.of(n))}" for n in self.inputs)

    def text(self) -> str:
        return " ".join(f"{OPTION} {s}" for s in self.spelled())

    def key(self) -> list:
        """What the export depends on (the cache's key): the axes, names and ranges, not where they were said."""
        return [[a.input, a.index, a.label, a.min, a.max] for a in self.axes]

    def to_json(self) -> dict:
        return {"axes": list(self.spelled()), "source": self.source}

    def named(self, input_names: Sequence[str], shapes: Mapping[str, tuple], what: str) -> "DynamicAxes":
        """The axes keyed by the model's input names (`input0`, `input1`, … accepted), each within its input's rank
        (`shapes`: the example's), every axis named (`<input>_<axis>` where none was given): one BadInputError
        line for an input the model does not take or an axis it does not have."""
        positional = {f"input{i}": n for i, n in enumerate(input_names)}
        out = []
        for a in self.axes:
            name = a.input if a.input in input_names else positional.get(a.input)
            if name is None:
                raise BadInputError(f"{self._said()} names input {a.input!r}: {what} takes "
                                    f"{', '.join(input_names)}")
            rank = len(shapes[name])
            index = a.index + rank if a.index < 0 else a.index
            if not 0 <= index < rank:
                raise BadInputError(f"{self._said()}: input {name!r} has {rank} axes (shape {list(shapes[name])}), "
                                    f"no axis {a.index}")
            out.append(replace(a, input=name, index=index, label=a.label or _default(name, index)))
        seen: dict[tuple[str, int], Axis] = {}
        for a in out:
            seen.setdefault((a.input, a.index), a)
        return DynamicAxes(tuple(sorted(seen.values(), key=lambda a: (input_names.index(a.input), a.index))),
                           self.source)

    def free(self, shapes: Mapping[str, tuple]) -> dict[str, tuple]:
        """`shapes` with None at every dynamic axis: what a sample's shape is checked against."""
        return {n: tuple(None if any(a.index == i for a in self.of(n)) else d for i, d in enumerate(s))
                for n, s in shapes.items()}

    def torch_shapes(self, input_names: Sequence[str]) -> tuple:
        """torch.export's `dynamic_shapes`, one entry per input in order (None: static): `{axis: Dim(label)}`, one
        `Dim` a label (axes of one label are one size)."""
        from torch.export import Dim

        dims: dict[str, object] = {}
        for a in self.axes:
            if a.label not in dims:
                bounds = {k: v for k, v in (("min", a.min), ("max", a.max)) if v is not None}
                dims[a.label] = Dim(a.label, **bounds)
        return tuple({a.index: dims[a.label] for a in self.of(n)} or None for n in input_names)

    def onnx_axes(self) -> dict[str, dict[int, str]]:
        """The TorchScript exporter's `dynamic_axes`: {input: {axis: label}}."""
        return {n: {a.index: a.label for a in self.of(n)} for n in self.inputs}

    def static_in(self, model) -> list[str]:
        """The axes an exported ONNX graph holds fixed all the same (torch.export specialises an axis the model ties
        to a static size), as `x:1 (128)`."""
        dims = {i.name: list(i.type.tensor_type.shape.dim) for i in model.graph.input}
        out = []
        for a in self.axes:
            d = dims.get(a.input, [])
            if a.index < len(d) and d[a.index].HasField("dim_value"):
                out.append(f"{a.input}:{a.index} ({d[a.index].dim_value})")
        return out

    def kept_in(self, model) -> "DynamicAxes | None":
        """Those of the axes that are dynamic in the exported graph (None: none): what axes inferred from samples come
        to, an axis the model ties to a static size (a weight's) being no axis of the model."""
        fixed = {s.split(" ")[0] for s in self.static_in(model)}
        kept = tuple(a for a in self.axes if f"{a.input}:{a.index}" not in fixed)
        return DynamicAxes(kept, self.source) if kept else None

    def _said(self) -> str:
        return {FROM_OPTION: OPTION, FROM_FILE: "dynamic()", FROM_RANGE: RANGE}.get(self.source, "the dynamic axes")


def said_of(doc: Mapping | None) -> list[str]:
    """The line a run says of dynamic axes inferred from its samples (`doc`: `DynamicAxes.to_json()`; none where they
    were declared, or there are none)."""
    if not doc or doc.get("source") != FROM_SAMPLES:
        return []
    given = " ".join(f"{OPTION} {a}" for a in doc["axes"])
    return [f"dynamic axes inferred from the samples' shapes: {', '.join(doc['axes'])} (exported with them; "
            f"`{given}` or a dynamic() beside the model's function says them)"]


def parse_dynamic(texts: Sequence[str] | None, option: str = OPTION) -> DynamicAxes | None:
    """`--dynamic NAME:AXIS[,AXIS]` (repeatable; an AXIS is `1` or `1=seq`, a name shared by axes of one size), as
    `DynamicAxes.spelled` prints them; None where none was given."""
    axes: list[Axis] = []
    for text in texts or ():
        name, sep, rest = str(text).strip().rpartition(":")
        if not sep or not name or not rest:
            raise BadInputError(f"{option} {text!r}: give NAME:AXIS[,AXIS] (e.g. x:1, input_ids:0,1, x:1=seq)")
        for part in rest.split(","):
            index, _, label = part.strip().partition("=")
            try:
                i = int(index)
            except ValueError:
                raise BadInputError(f"{option} {text!r}: {index!r} is no axis number (NAME:AXIS[,AXIS], e.g. "
                                    "x:1=seq)") from None
            if label and not label.isidentifier():
                raise BadInputError(f"{option} {text!r}: the axis name {label!r} must be an identifier (seq, batch)")
            axes.append(Axis(name, i, label or None))
    return DynamicAxes(tuple(axes), FROM_OPTION) if axes else None


def from_user(value, input_names: Sequence[str], where: str) -> DynamicAxes:
    """What a `--torch` file's `dynamic()` returned, as torch.export's `dynamic_shapes` takes it: a dict keyed by input
    name, or a tuple / list with one entry per input in order; each entry None (static), a dict {axis: name | Dim |
    None} or a tuple / list with one entry per axis (None or an int: static; a name or a `Dim`: dynamic). A `Dim`'s
    name and range are kept; `Dim.AUTO` / `Dim.DYNAMIC` axes are named here."""
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, (tuple, list)):
        if len(value) > len(input_names):
            raise BadInputError(f"{where} gives {len(value)} entries, but the model takes {len(input_names)} inputs "
                                f"({', '.join(input_names)})")
        items = list(zip(input_names, value))
    else:
        raise BadInputError(f"{where} must return a dict {{input: {{axis: name}}}} or a tuple with one entry per "
                            f"input (got {type(value).__name__})")
    axes = []
    for name, spec in items:
        if spec is None:
            continue
        if isinstance(spec, (tuple, list)):  # one entry an axis: None or a size static, a name or Dim dynamic
            pairs = [(i, d) for i, d in enumerate(spec) if d is not None and not isinstance(d, int)]
        elif isinstance(spec, Mapping):
            pairs = list(spec.items())
        else:
            raise BadInputError(f"{where}: input {name!r}'s axes must be a dict {{axis: name}} or a tuple with one "
                                f"entry per axis (got {type(spec).__name__})")
        for index, dim in pairs:
            if not isinstance(index, int) or isinstance(index, bool):
                raise BadInputError(f"{where}: input {name!r} has axis {index!r}, not an integer")
            axes.append(_axis(str(name), index, dim, where))
    return DynamicAxes(tuple(axes), FROM_FILE)


def _axis(name: str, index: int, dim, where: str) -> Axis:
    if dim is None or isinstance(dim, str):
        if dim and not dim.isidentifier():
            raise BadInputError(f"{where}: the axis name {dim!r} must be an identifier (seq, batch)")
        return Axis(name, index, dim or None)
    label = getattr(dim, "__name__", None)
    if not isinstance(label, str):  # Dim.AUTO / Dim.DYNAMIC: dynamic, named here
        return Axis(name, index)
    lo, hi = getattr(dim, "min", None), getattr(dim, "max", None)
    return Axis(name, index, label, lo if isinstance(lo, int) and lo > 0 else None,
                hi if isinstance(hi, int) and hi < 2**62 else None)


def inferred(example: Mapping[str, tuple], samples: Sequence[Mapping[str, tuple]],
             input_names: Sequence[str]) -> DynamicAxes | None:
    """The axes whose size differs between the example inputs' shapes and a sample's (keys: input names or input0,
    input1, …; others left out), each under its own name (`x_1`): two axes the model ties (a mask's sequence and the
    ids') are found one by torch.export, while a square image's height and width, equal in every sample, stay two.
    None where every sample has the example's shape, or a rank differs (the sample check says so)."""
    positional = {f"input{i}": n for i, n in enumerate(input_names)}
    sizes: dict[tuple[str, int], set[int]] = {}
    for shapes in samples:
        keyed = {(k if k in example else positional.get(k)): tuple(s) for k, s in shapes.items()}
        for name, want in example.items():
            got = keyed.get(name)
            if got is None or len(got) != len(want):
                continue
            for i, (w, g) in enumerate(zip(want, got)):
                sizes.setdefault((name, i), {w}).add(g)
    axes = tuple(Axis(n, i, _default(n, i)) for (n, i), v in sizes.items() if len(v) > 1)
    return DynamicAxes(axes, FROM_SAMPLES) if axes else None


def of_range(lo: Mapping[str, Sequence[int]], hi: Mapping[str, Sequence[int]]) -> DynamicAxes | None:
    """The axes a declared range moves (`lo` / `hi`: its min and max shapes, input -> shape, one rank each), each
    under its own name (`x_1`); None where min and max are one shape."""
    axes = tuple(Axis(n, i) for n, shape in lo.items() for i, (a, b) in enumerate(zip(shape, hi.get(n, shape)))
                 if a != b)
    return DynamicAxes(axes, FROM_RANGE) if axes else None


def with_range(declared: DynamicAxes | None, ranged: DynamicAxes, input_names: Sequence[str],
               example: Mapping[str, tuple], what: str) -> DynamicAxes:
    """The axes a `--torch` model is exported with under a declared range: those `declared` (`--dynamic`, a
    `dynamic()`), which must hold every axis the range moves (one BadInputError line naming those they hold static),
    else the range's own; named and checked (`DynamicAxes.named`)."""
    ranged = ranged.named(input_names, example, what)
    if not declared:
        return ranged
    declared = declared.named(input_names, example, what)
    held = {(a.input, a.index) for a in declared.axes}
    static = [f"{a.input}:{a.index}" for a in ranged.axes if (a.input, a.index) not in held]
    if static:
        raise BadInputError(f"{RANGE} move {', '.join(static)}, which {declared._said()} holds static (it declares "
                            f"{', '.join(declared.spelled())}): declare {'it' if len(static) == 1 else 'them'} "
                            "dynamic too, or give one size there")
    return declared


def _default(name: str, index: int) -> str:
    """An axis's name where none was given: `<input>_<axis>` (`input_ids_1`)."""
    return f"{_ident(name)}_{index}"


def _ident(name: str) -> str:
    text = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return text if text.isidentifier() else f"_{text}"
