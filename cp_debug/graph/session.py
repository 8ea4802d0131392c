"""Run an in-memory ONNX model in a plain ONNX Runtime session (the graph helpers' runner, not a backend)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import onnx


def run_ort(model, feed: dict, providers=("CPUExecutionProvider",), session_options: dict | None = None) -> dict:
    """Run an in-memory ONNX model in ONNX Runtime; feeds are cast to the types the model declares."""
    import onnxruntime as ort

    from cp_debug.ort_sessions import open_session
    from cp_debug.ort_sessions import session_options as options

    so = options()
    for key, value in (session_options or {}).items():
        if key == "graph_optimization_level" and isinstance(value, str):
            value = getattr(ort.GraphOptimizationLevel, value)
        if key == "config_entries":  # session config keys, e.g. {"session.x64quantprecision": "1"}
            for k, v in value.items():
                so.add_session_config_entry(str(k), str(v))
            continue
        setattr(so, key, value)
    names = [p if isinstance(p, str) else p[0] for p in providers]
    opts = [({} if isinstance(p, str) else dict(p[1])) for p in providers]
    point_at_weights(so, model)
    with session_source(model) as src:
        sess = open_session(src, so, names, provider_options=opts)
    types = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}
    fed = {}
    for i in sess.get_inputs():
        a = np.asarray(feed[i.name])
        want = types.get(i.type)
        fed[i.name] = a.astype(want) if want is not None and a.dtype != want else a
    outs = sess.run(None, fed)
    return dict(zip([o.name for o in sess.get_outputs()], outs))


def cast_feed(model, feed: dict) -> dict:
    """The model's declared inputs from `feed`, each cast to the element type the graph declares."""
    import onnx

    out = {}
    for i in model.graph.input:
        if i.name in feed:
            dt = onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)
            out[i.name] = np.asarray(feed[i.name]).astype(dt, copy=False)
    return out


def run_all_outputs(graph, feed: dict, providers=("CPUExecutionProvider",),
                    session_options: dict | None = None) -> dict[str, np.ndarray]:
    """Every computed tensor of a gs.Graph (outputs and intermediates) from one ONNX Runtime run on `feed`."""
    import onnx_graphsurgeon as gs

    g = graph.copy()
    seen = {t.name for t in g.outputs}
    outs = list(g.outputs)
    for nd in g.nodes:
        for t in nd.outputs:
            if isinstance(t, gs.Variable) and t.name and t.name not in seen:
                seen.add(t.name)
                outs.append(t)
    g.outputs = outs
    from cp_debug.graph.onnx_files import export_graph

    model = export_graph(g, do_type_check=False)
    return run_ort(model, feed, providers, session_options)


def point_at_weights(so, model: "onnx.ModelProto") -> None:
    """Tell ONNX Runtime's session options `so` where `model`'s stored weights are (`weight_store`): a session made
    from the graph's bytes reads them from the process's weights folder. Nothing for a model that has none."""
    from cp_debug.graph.onnx_files import holds_stored
    from cp_debug.graph.weight_store import ROOT
    from cp_debug.ort_sessions import point_at

    if holds_stored(model):  # every stored location is relative to the root (weight_store.register)
        point_at(so, ROOT)


@contextmanager
def session_source(model: "onnx.ModelProto", folder: str | os.PathLike | None = None) -> Iterator[bytes | str]:
    """What `onnxruntime.InferenceSession` takes for `model`: its bytes when it fits one message, else the path of a
    copy written with external data into `folder` (a temporary folder, removed on exit, where none is given).
    ONNX Runtime reads the weights while the session is made, so the files may go once it exists."""
    import tempfile

    from cp_debug.graph.onnx_files import encoded, holds_stored, keep, save_onnx
    from cp_debug.graph.weight_store import referring

    if holds_stored(model):  # the graph's bytes: its weights are read from the weights folder (point_at_weights),
        yield referring(keep(model)).SerializeToString()  # as are those read in from a data file
        return
    data = encoded(model)
    if data is not None:
        yield data
        return
    if folder is not None:
        target = Path(folder) / "model.onnx"
        save_onnx(model, target, external=True)
        yield str(target)
        return
    with tempfile.TemporaryDirectory(prefix="cpdebug_big_") as tmp:
        target = Path(tmp) / "model.onnx"
        save_onnx(model, target, external=True)
        yield str(target)
