"""A window as the bisect's lockstep computed it on `ort-cpu-fp16`: float16 weights, float32 arithmetic, and
every value crossing one of the run's cuts rounded to float16.

ONNX Runtime's CPU provider has few float16 kernels (none for Conv): it runs most of an FP16 graph in float32 on
the float16 weights and drops the Cast pairs it inserts around those nodes, so activations between them are not
rounded (Casts put into the FP16 graph are dropped too). The lockstep rounds every value crossing a cut to float16,
as TensorRT or the CUDA EP hold them; a window of the plain FP16 conversion therefore does not compute what the
bisect compared. This graph does: the window's FP32 graph with the constants the FP16 conversion converts rounded
to float16 values, and an explicit Cast float32 → float16 → float32 on each tensor the lockstep rounded (the cut
tensors in the window, its output, and its inputs where they are cut tensors). In a float32 graph ONNX Runtime
keeps such a pair.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx


def round_at_cuts(window: "onnx.ModelProto", rounded: Iterable[str], *,
                  keep_fp32_nodes: Iterable[str] = ()) -> tuple["onnx.ModelProto", list[str]]:
    """(the emulating graph, the tensors rounded in it, in node order); `window` is FP32 and is not modified.

    `rounded`: the tensors the bisect held in float16: every value crossing one of the lockstep's cuts (its
    segments' outputs), which includes the window's output and the inputs of a window that starts at a cut (but
    not the stage's own inputs, which the lockstep feeds as they are).
    """
    import onnx_graphsurgeon as gs

    from cp_debug.graph.model import cleanup, cut_ir_version, import_typed
    from cp_debug.graph.onnx_files import export_graph
    from cp_debug.graph.weight_store import import_graph
    from cp_debug.precision.fp16 import convert_to_fp16

    keep = [n for n in keep_fp32_nodes if n in {nd.name for nd in window.graph.node}]
    converted = import_graph(convert_to_fp16(window, keep_fp32_nodes=keep))
    halved = {name.removesuffix("_fp16") for name, t in converted.tensors().items()
              if isinstance(t, gs.Constant) and np.asarray(t.values).dtype == np.float16}

    graph = import_typed(window)  # the dtypes of intermediate tensors: only float32 ones are rounded
    tensors = graph.tensors()
    for name in halved:
        t = tensors.get(name)
        if isinstance(t, gs.Constant) and np.asarray(t.values).dtype == np.float32:
            t.values = np.asarray(t.values).astype(np.float16).astype(np.float32)
    for node in graph.nodes:  # Constant nodes' values (the converter converts them too)
        if node.op == "Constant" and node.outputs and node.outputs[0].name in halved:
            v = node.attrs.get("value")
            if isinstance(v, gs.Constant) and np.asarray(v.values).dtype == np.float32:
                v.values = np.asarray(v.values).astype(np.float16).astype(np.float32)

    wanted = set(rounded)
    order = [t.name for t in graph.inputs] + [t.name for nd in graph.nodes for t in nd.outputs]
    done: list[str] = []
    for name in dict.fromkeys(order):
        t = tensors.get(name)
        if name not in wanted or not isinstance(t, gs.Variable) or t.dtype != np.float32:
            continue
        _round(graph, t)
        done.append(name)
    cleanup(graph).toposort()
    out = export_graph(graph)
    out.ir_version = cut_ir_version(window)
    return out, done


def _round(graph, t) -> None:
    """Route every reader of `t` (and the graph output of that name) through Cast fp32 → fp16 → fp32."""
    import onnx
    import onnx_graphsurgeon as gs

    readers = list(t.outputs)
    as_output = [i for i, o in enumerate(graph.outputs) if o is t]
    half = gs.Variable(f"{t.name}__cpdebug_fp16", dtype=np.float16, shape=t.shape)
    back = gs.Variable(f"{t.name}__cpdebug_rounded", dtype=np.float32, shape=t.shape)
    graph.nodes.append(gs.Node("Cast", f"{t.name}__cpdebug_to_fp16", {"to": onnx.TensorProto.FLOAT16}, [t], [half]))
    graph.nodes.append(gs.Node("Cast", f"{t.name}__cpdebug_to_fp32", {"to": onnx.TensorProto.FLOAT}, [half], [back]))
    for nd in readers:
        for i, x in enumerate(nd.inputs):
            if x is t:
                nd.inputs[i] = back
    if as_output:  # the output keeps its name: the unrounded tensor is renamed
        name = t.name
        t.name = f"{name}__cpdebug_unrounded"
        back.name = name
        for i in as_output:
            graph.outputs[i] = back
