"""Cut an ONNX graph between probes: the segment that computes some tensors from other known tensors.

Used for local error (run one segment alone on the reference's boundary values) and for bug-report
bundles. Graph surgery goes through onnx-graphsurgeon only.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx

from cp_debug.errors import BadInputError


def segment_inputs(model: onnx.ModelProto, targets: Iterable[str], known: Iterable[str]) -> list[str]:
    """The known tensors (or graph inputs) that `targets` depend on, walking back and stopping at known ones
    (`graph.plan.cut_segment`'s inputs): the known tensors by name, then the graph inputs in their order."""
    from cp_debug.graph.plan import cut_segment

    initializers = {i.name for i in model.graph.initializer}
    order = {n: i for i, n in enumerate(i.name for i in model.graph.input if i.name not in initializers)}
    return sorted(set(cut_segment(model, targets, known).inputs), key=lambda n: (order.get(n, -1), n))


def extract_segment(model: onnx.ModelProto, inputs: dict[str, np.ndarray], outputs: list[str],
                    output_shapes: dict[str, tuple] | None = None) -> onnx.ModelProto:
    """A standalone model computing `outputs` from the tensors named in `inputs` (shapes/dtypes from the arrays).

    `output_shapes` (e.g. from the reference values) fills output shapes that shape inference cannot resolve.
    """
    import onnx_graphsurgeon as gs

    from cp_debug.graph.model import cleanup, cut_ir_version, import_typed
    from cp_debug.graph.onnx_files import export_graph

    graph = import_typed(model)  # best effort: dtypes of outputs default to float32 below
    tensors = graph.tensors()
    missing = [n for n in list(inputs) + list(outputs) if n not in tensors]
    if missing:
        raise BadInputError(f"cannot cut the graph: no tensor named {missing[0]!r}")
    new_inputs = []
    for name, arr in inputs.items():
        t = tensors[name]
        if isinstance(t, gs.Constant):
            raise BadInputError(f"cannot cut the graph at constant {name!r}")
        t.dtype = np.asarray(arr).dtype
        t.shape = list(np.asarray(arr).shape)
        new_inputs.append(t)
    new_outputs = []
    for name in outputs:
        t = tensors[name]
        t.dtype = t.dtype or np.float32
        new_outputs.append(t)
    graph.inputs = new_inputs
    graph.outputs = new_outputs
    cleanup(graph).toposort()
    out = export_graph(graph)
    out.ir_version = cut_ir_version(model)
    return _fill_output_shapes(out, output_shapes or {})


def _fill_output_shapes(model: onnx.ModelProto, given: dict[str, tuple]) -> onnx.ModelProto:
    """Outputs whose shape the original graph left unknown get it from inference on the (now static) segment."""
    if all(o.type.tensor_type.HasField("shape") for o in model.graph.output):
        return model
    from cp_debug.graph.model import inferred_graph

    inferred = inferred_graph(model)
    known = {vi.name: vi for vi in list(inferred.value_info) + list(inferred.output)}
    for o in model.graph.output:
        vi = known.get(o.name)
        if not o.type.tensor_type.HasField("shape"):
            if vi is not None and vi.type.tensor_type.HasField("shape"):
                o.type.tensor_type.shape.CopyFrom(vi.type.tensor_type.shape)
            elif o.name in given:
                for d in given[o.name]:
                    o.type.tensor_type.shape.dim.add().dim_value = int(d)
    return model


def cut_range(graph, start: int, stop: int, values: dict):
    """The model of nodes [start, stop) of a toposorted gs.Graph, typed from `values`, with its input/output names.

    Inputs: the variables the range consumes but does not make; outputs: the tensors it makes that later nodes or
    the graph's outputs use. Dtypes and shapes come from `values` (name → array: reference values at any cut).
    """
    import onnx_graphsurgeon as gs

    from cp_debug.graph.model import cleanup

    g = graph.copy()
    nodes = g.nodes[start:stop]
    made = {t.name for nd in nodes for t in nd.outputs}
    used_later = {t.name for nd in g.nodes[stop:] for t in nd.inputs}
    final = {t.name for t in g.outputs}
    ins, outs, seen = [], [], set()
    for nd in nodes:
        for t in nd.inputs:
            if isinstance(t, gs.Variable) and t.name and t.name not in made and t.name not in seen:
                seen.add(t.name)
                ins.append(t)
    for nd in nodes:
        for t in nd.outputs:
            if t.name in used_later or t.name in final:
                outs.append(t)
    for t in ins + outs:
        v = values[t.name]
        t.dtype, t.shape = v.dtype, list(v.shape)
    g.inputs, g.outputs = ins, outs
    cleanup(g)
    from cp_debug.graph.onnx_files import export_graph

    return export_graph(g), [t.name for t in ins], [t.name for t in outs]
