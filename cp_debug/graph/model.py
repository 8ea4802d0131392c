"""Shared ONNX helpers: load with one clear error, expose intermediate tensors as outputs, export like the input.

Graph edits go through onnx-graphsurgeon only (import_onnx → edit → cleanup().toposort() → export_onnx).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from cp_debug.errors import BadInputError, first_line

if TYPE_CHECKING:  # pragma: no cover
    import onnx
    import onnx_graphsurgeon as gs

def load_onnx(path_or_model: "onnx.ModelProto | str | Path", check: bool = True) -> "onnx.ModelProto":
    """Load and check an ONNX model; a missing, corrupt or invalid file is one `BadInputError` line.

    External data next to the file is loaded. A ModelProto given directly is checked (unless `check` is False:
    a graph we cut ourselves from a checked one, whose outputs may lack the shapes the checker insists on)
    and returned as is (callers never mutate it: every transform here builds a new model).
    """
    import onnx

    from cp_debug.graph.onnx_files import encoded
    from cp_debug.graph.onnx_read import MissingDataFile, read_onnx

    if isinstance(path_or_model, onnx.ModelProto):
        model = path_or_model
        try:
            data = encoded(model) if check else None  # None past 2 GiB: not checked in memory
            if data is not None:
                onnx.checker.check_model(data)  # what check_model(model) checks, the model encoded once
        except onnx.checker.ValidationError as err:
            if _checked_as_ort(model, err):
                return model
            raise BadInputError(f"the ONNX model is not valid: {first_line(err)}; re-export "
                                "it or fix the graph") from err
        return model
    if not isinstance(path_or_model, (str, Path)):
        raise BadInputError(f"expected an ONNX file path or onnx.ModelProto, got {type(path_or_model).__name__}")
    path = Path(path_or_model)
    if path.is_dir():  # a folder that exists is not "not found": say what it lacks or holds
        held = sorted(p.name for p in path.glob("*.onnx"))
        raise BadInputError(f"{path} is a folder, not an ONNX file: " + (
            f"give one of its files ({', '.join(held[:5])}{' …' if len(held) > 5 else ''})" if held
            else "it holds no .onnx file"))
    if not path.is_file():
        raise BadInputError(f"ONNX file not found: {path}")
    try:
        model = read_onnx(path)  # past 2 GiB its data files registered where they lie, not read
    except MissingDataFile as err:
        raise BadInputError(f"cannot load {path}: its external data file {str(err)!r} (the weights ONNX keeps "
                            f"outside the graph) is not beside it; copy it into {path.parent}") from err
    except FileNotFoundError as err:
        raise BadInputError(f"cannot load {path}: its external data file is missing ({first_line(err)})") from err
    except Exception as err:  # noqa: BLE001 - protobuf DecodeError, onnx errors, truncated files: all one message
        raise BadInputError(
            f"cannot read {path} as an ONNX model ({type(err).__name__}: {first_line(err)}); is it a "
            "complete .onnx file?"
        ) from err
    try:
        onnx.checker.check_model(str(path))  # by path: works beyond 2 GiB and with external data
    except onnx.checker.ValidationError as err:
        if _checked_as_ort(model, err):
            return model
        raise BadInputError(f"{path} is not a valid ONNX model: {first_line(err)}") from err
    except Exception as err:  # noqa: BLE001
        raise BadInputError(f"{path} could not be checked as an ONNX model: {first_line(err)}") from err
    return model


def _checked_as_ort(model: "onnx.ModelProto", err: Exception) -> bool:
    """True where the checker refused only an operator ONNX Runtime registers in the ONNX domain (the model builder's
    `SimplifiedLayerNormalization`) and the model checks with those nodes read as ONNX Runtime's (graph/ort_ops.py);
    the checker's error on the rest is raised. Past 2 GiB (no encoding in memory) the rest is left to ORT's loading."""
    import onnx

    from cp_debug.graph.onnx_files import encoded
    from cp_debug.graph.ort_ops import checked_as_ort, ort_only_op

    if ort_only_op(err) is None:
        return False

    def check(m: "onnx.ModelProto") -> None:
        data = encoded(m)
        if data is not None:
            onnx.checker.check_model(data)

    try:
        checked_as_ort(model, check)
    except onnx.checker.ValidationError as rest:
        raise BadInputError(f"the ONNX model is not valid: {first_line(rest)}; re-export it or fix the graph") from rest
    return True


def export_like(graph: "gs.Graph", original: "onnx.ModelProto") -> "onnx.ModelProto":
    """`gs.export_onnx` keeping the original's IR version, opsets and metadata (ORT rejects too-new IR versions), and
    each node's metadata where a node of the same name and op type was in the original (graphsurgeon drops it; the
    dynamo exporter's `pkg.torch.onnx.name_scopes` there is what maps a file's nodes onto modules)."""
    from cp_debug.graph.onnx_files import export_graph

    model = export_graph(graph)
    kept = {(n.name, n.op_type): n.metadata_props for n in original.graph.node if n.name and n.metadata_props}
    if kept:
        for node in model.graph.node:
            props = kept.get((node.name, node.op_type))
            if props is not None and not node.metadata_props:
                node.metadata_props.extend(props)
    model.ir_version = cut_ir_version(original)
    del model.opset_import[:]
    model.opset_import.extend(original.opset_import)
    model.producer_name = original.producer_name
    model.producer_version = original.producer_version
    del model.metadata_props[:]
    model.metadata_props.extend(original.metadata_props)
    return model


def cut_ir_version(original: "onnx.ModelProto") -> int:
    """The IR version of a graph made from `original`'s nodes: the original's, and at least 4 — under IR 3 every
    initializer must also be a graph input, which graphsurgeon's export and cp_debug's cuts do not write (ONNX's
    own zoo files, e.g. light_resnet50.onnx, are IR 3)."""
    return max(int(original.ir_version), 4)


def cleanup(graph: "gs.Graph") -> "gs.Graph":
    """`graph.cleanup()` (the graph's inputs kept, as by default), the inputs set aside while it runs:
    onnx-graphsurgeon tests each input against a list of the used tensors, O(inputs × tensors) — an opened group of
    DenseNet-121 (1,746 `::cut` inputs) spent 1.8 s there."""
    inputs = list(graph.inputs)
    for t in inputs:  # what cleanup does first: a graph input's producers go (the walk back stops at the inputs)
        t.inputs.clear()
    graph.inputs = []
    try:
        graph.cleanup()
    finally:
        graph.inputs = inputs
    return graph


def static_dims(ty: "onnx.TypeProto") -> tuple[int | None, ...] | None:
    """A tensor type's dimensions, None for each one left open; None where the type has no shape at all. A
    dim_value below 1 is open too: paddle2onnx and tf2onnx write a dynamic batch as -1 (ONNX Runtime runs any size
    there; PaddleOCR's classifier's `x` is [-1, 3, ?, ?])."""
    tt = ty.tensor_type
    if not tt.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim)


def infer_types(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """Shape/type inference that never fails: returns the model unchanged where inference cannot run.

    Inference runs on `without_weights(model)` and the weights are put back into its result: the same model
    `infer_shapes(model)` gives, without encoding the weights to C++ and decoding them back (55 -> 7 ms on the
    tiny preset's 18 MB backbone; ~12 such calls a bisect)."""
    inferred = _inferred_without_weights(model)
    if inferred is None:
        return model
    inits, originals = inferred.graph.initializer, model.graph.initializer
    if len(inits) != len(originals):
        return model  # inference never adds or drops initializers; were it to, keep the model as it was
    from cp_debug.graph.onnx_files import copy_tensor

    for k, t in enumerate(originals):
        if _is_weight(t):
            copy_tensor(t, inits[k])
    return inferred


def import_typed(model: "onnx.ModelProto") -> "gs.Graph":
    """`gs.import_onnx(infer_types(model))` without copying a weight: the graph imported from `model` itself (its
    constants hold the model's own tensors) and each variable whose type the file leaves open typed from inference
    on the model without its weights' values, as graphsurgeon types it from `value_info`."""
    import onnx_graphsurgeon as gs
    from onnx_graphsurgeon.importers.onnx_importer import get_onnx_tensor_dtype, get_onnx_tensor_shape

    from cp_debug.graph.weight_store import import_graph

    graph = import_graph(model)
    # a graph output's own declaration wins over a stale value_info of its name, as ONNX Runtime reads the file
    # (onnxconverter-common's float16 with keep_io_types leaves value_info '387' float16 on ddddocr's float output)
    declared = {o.name: o for o in model.graph.output if o.type.tensor_type.elem_type}
    for t in graph.outputs:
        if t.name in declared and isinstance(t, gs.Variable):
            t.dtype = get_onnx_tensor_dtype(declared[t.name])
    inferred = _inferred_without_weights(model)
    if inferred is None:
        return graph
    g = inferred.graph
    known = {vi.name: vi for vi in (*g.value_info, *g.output) if vi.type.ByteSize() > 0}
    for name, t in graph.tensors().items():
        vi = known.get(name)
        if vi is not None and isinstance(t, gs.Variable):
            t.dtype = t.dtype or get_onnx_tensor_dtype(vi)
            t.shape = t.shape or get_onnx_tensor_shape(vi)
    return graph


def inferred_graph(model: "onnx.ModelProto") -> "onnx.GraphProto":
    """The graph of `infer_types(model)` for readers of its types (value_info, inputs, outputs, nodes): the weights'
    values left out; `model.graph` where inference cannot run."""
    inferred = _inferred_without_weights(model)
    return model.graph if inferred is None else inferred.graph


def _inferred_without_weights(model: "onnx.ModelProto") -> "onnx.ModelProto | None":
    """`infer_shapes` of `without_weights(model)`; None where inference cannot run (custom ops, odd graphs)."""
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(without_weights(model), strict_mode=False, data_prop=False)
    except Exception:  # noqa: BLE001 - the types stay those the file declares
        return None


def without_weights(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """A copy of `model` whose weights (initializers of more than `_WEIGHT_ELEMENTS` elements) keep their name,
    element type and dims but not their values: what shape inference reads of them. The values inference does
    read (Reshape's shape, Slice's starts, Resize's scales, Pad's pads, ...) hold a few numbers an axis, and stay."""
    import onnx

    from cp_debug.graph.onnx_files import copy_fields

    g = model.graph
    light = onnx.ModelProto()
    copy_fields(model, light, skip="graph")
    copy_fields(g, light.graph, skip="initializer")
    for t in g.initializer:
        if _is_weight(t):
            light.graph.initializer.add(name=t.name, data_type=t.data_type, dims=t.dims)
        else:
            light.graph.initializer.append(t)
    return light


_WEIGHT_ELEMENTS = 1024  # more elements than an axis list or a shape ever has


def _is_weight(t: "onnx.TensorProto") -> bool:
    n = 1
    for d in t.dims:
        n *= d
    return n > _WEIGHT_ELEMENTS


def expose_outputs(model: "onnx.ModelProto", names: Iterable[str]) -> "onnx.ModelProto":
    """A copy of `model` with the named intermediate tensors added as graph outputs (existing outputs kept first).

    Types come from shape inference (float32 where unknown). Unknown names → BadInputError naming a few valid
    ones; names of constants (initializers) are refused: they are not computed, so there is nothing to compare.
    """
    import numpy as np

    names = list(dict.fromkeys(names))
    if not names:
        return model
    check_tensor_names(model, names)
    graph = import_typed(model)
    tensors = graph.tensors()
    present = {t.name for t in graph.outputs}
    for name in names:
        if name in present:
            continue
        t = tensors[name]
        if t.dtype is None:
            t.dtype = np.float32
        graph.outputs.append(t)
        present.add(name)
    cleanup(graph).toposort()
    return export_like(graph, model)


def check_tensor_names(model: "onnx.ModelProto", names: Iterable[str]) -> None:
    """BadInputError unless every name is a computed tensor (node output or graph input) of the model.

    Read from the proto, as onnx-graphsurgeon's import sees it (that import cost 4 CPU-s over the test suite for
    this check alone): its tensors are the graph's inputs (but those an initializer of the same name replaces),
    its outputs and every node's inputs and outputs; the initializers (dense or sparse) are its constants."""
    names = list(names)
    if not names:
        return
    g = model.graph
    consts = {t.name for t in g.initializer} | {t.values.name for t in g.sparse_initializer}
    known = {i.name for i in g.input if i.name not in consts} | {o.name for o in g.output}
    for node in g.node:
        known.update(node.input)
        known.update(node.output)
    known.discard("")
    unknown = [n for n in names if n not in known]
    if unknown:
        computed = computed_tensor_names(g)
        raise BadInputError(
            f"unknown ONNX tensor name(s) {_few(unknown)}: not in the graph; valid ones include {_few(computed)}"
        )
    constant = [n for n in names if n in consts]
    if constant:
        raise BadInputError(f"{_few(constant)} are constants (initializers), not computed tensors: probe "
                            "their consumers instead")


def computed_tensor_names(graph: "onnx.GraphProto") -> list[str]:
    """Names of node outputs in the graph's node order (what can be exposed and compared)."""
    return [t for node in graph.node for t in node.output if t]


def _few(names: list[str], k: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:k])
    return shown + (f" … ({len(names)} in all)" if len(names) > k else "")



def expose_all(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """A copy of `model` with every computed tensor (but Constant nodes' outputs) exposed as an output."""
    names = [t for n in model.graph.node for t in n.output if t and n.op_type != "Constant"]
    return expose_outputs(model, names)


def fold_initializer_identities(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """Identity nodes that pass an initializer on become initializers of their own name.

    The TorchScript exporter deduplicates equal weights (two zero biases, say) and leaves `Identity(bias_a)`
    as `bias_b`: ORT's quantizer then finds a Conv bias that is not an initializer ("Expected bias … to be an
    initializer"), and a graph cut between the Identity and its reader turns the bias into a boundary input.
    Folding keeps every tensor name and value."""
    import numpy as np
    import onnx_graphsurgeon as gs

    if not any(n.op_type == "Identity" for n in model.graph.node):
        return model
    inits = {i.name for i in model.graph.initializer}
    if not any(n.op_type == "Identity" and n.input and n.input[0] in inits for n in model.graph.node):
        return model
    from cp_debug.graph.weight_store import import_graph

    graph = import_graph(model)
    outputs = {t.name for t in graph.outputs}
    for node in graph.nodes:
        src = node.inputs[0] if node.op == "Identity" and node.inputs else None
        if isinstance(src, gs.Constant) and node.outputs[0].name not in outputs:
            out = node.outputs[0]
            node.outputs.clear()
            out.to_constant(np.array(src.values, copy=True))
    cleanup(graph)
    return export_like(graph, model)


def constant_tensors(graph: "onnx.GraphProto") -> dict[str, "onnx.TensorProto"]:
    """The graph's constant values by tensor name: its initializers and its `Constant` nodes' tensors (an
    initializer's name first, as ONNX Runtime reads a name given twice)."""
    values = {i.name: i for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].HasField("t"):
            values.setdefault(n.output[0], n.attribute[0].t)
    return values


def wiring(nodes) -> tuple[dict[str, int], dict[str, list[int]]]:
    """`nodes` (a graph's, in order) wired by tensor: the index of the node writing each tensor, and the indices of
    the nodes reading it (an optional input's empty name left out)."""
    producer = {t: i for i, n in enumerate(nodes) for t in n.output if t}
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for t in n.input:
            if t:
                consumers.setdefault(t, []).append(i)
    return producer, consumers


def at_opset(model: "onnx.ModelProto", version: int, needs: str) -> "onnx.ModelProto":
    """`model` at ONNX opset `version` or later: as it is where it is there already, else converted by onnx's version
    converter (every tensor keeps its name; an attribute that became an input is a new constant). `needs` says what
    asks for the opset, for the one line of a BadInputError where onnx cannot convert the model."""
    import onnx

    from cp_debug.errors import BadInputError

    have = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if have >= version:
        return model
    try:
        return onnx.version_converter.convert_version(model, version)
    except Exception as err:  # noqa: BLE001 - the converter's errors are of many types
        raise BadInputError(f"{needs} needs opset {version} or later and onnx could not convert this opset {have} "
                            f"model ({type(err).__name__}: {str(err).splitlines()[0][:200]}); export it at opset "
                            f"{version}+") from err


def named_nodes(model: "onnx.ModelProto", what: str) -> "tuple[onnx.ModelProto, list[str]]":
    """`model` with each unnamed node called by its first output (a fresh name where a node already has that one),
    and the line that says so; `model` itself and no line where every node has a name. A cure names nodes
    (`--keep-fp32`, `--exclude-int8`, fix's keep list): swift-f0's file leaves all 358 unnamed, and the advice read
    "Log '' left out of INT8 (--exclude-int8 )". `what` names the file in the line."""
    import onnx

    unnamed = [k for k, n in enumerate(model.graph.node) if not n.name]
    if not unnamed:
        return model, []
    named = onnx.ModelProto()
    named.CopyFrom(model)
    taken = {n.name for n in named.graph.node if n.name}
    for k in unnamed:
        node = named.graph.node[k]
        base = next((t for t in node.output if t), node.op_type)
        name, i = base, 1
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        node.name = name
        taken.add(name)
    first = named.graph.node[unnamed[0]]
    return named, [f"{len(unnamed)} of {what}'s {len(model.graph.node)} nodes have no name: each is called by its "
                   f"first output ({first.op_type} → {first.name!r}), as --keep-fp32 and --exclude-int8 take them"]
