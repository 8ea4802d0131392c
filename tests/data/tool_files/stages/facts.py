"""What plain ONNX Runtime (the project's, 1.32) makes of one corpus file, and the reference it is judged by.

Used by answers.py when make.py writes cases.json, and by tests/data/test_tool_files.py to check that the
recorded facts still hold. Runs in the project's environment (onnx, onnxruntime, numpy; torch only for
`reference`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NP_OF_ONNX = {1: np.float32, 10: np.float16, 7: np.int64, 6: np.int32, 11: np.float64, 16: "bfloat16"}


def file_inputs(model) -> list[dict]:
    """[{name, elem_type, shape}] of the graph's real inputs (initializers listed as inputs left out)."""
    inits = {i.name for i in model.graph.initializer}
    out = []
    for i in model.graph.input:
        if i.name in inits:
            continue
        t = i.type.tensor_type
        shape = [d.dim_param or d.dim_value for d in t.shape.dim]
        out.append({"name": i.name, "elem_type": t.elem_type, "shape": shape})
    return out


def feeds(inputs: list[dict], npz: Path) -> dict:
    """The sample .npz as the file takes it: each array by the input's name, cast to the input's element type."""
    data = np.load(npz)
    return {i["name"]: data[i["name"]].astype(NP_OF_ONNX[i["elem_type"]]) for i in inputs}


def first_error_line(e: Exception) -> str:
    """ORT's message's first line that says something (its '[ONNXRuntimeError] : N : KIND :' prefix kept), the
    corpus folder's path cut from the file's name."""
    lines = [s.strip().replace(f"{ROOT}/", "") for s in str(e).splitlines() if s.strip()]
    return lines[0][:500] if lines else type(e).__name__


def ort_run(path: Path, npz: Path, optimized: bool) -> dict:
    """{"accepts": bool, "error": first line or None, "output": array or None} of a plain CPU InferenceSession,
    graph optimisation off (ORT_DISABLE_ALL) or at ORT's default (ORT_ENABLE_ALL)."""
    import onnx
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    try:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - the refusal is the fact recorded
        return {"accepts": False, "error": first_error_line(e), "output": None}
    try:
        out = sess.run(None, feeds(file_inputs(onnx.load(str(path), load_external_data=False)), npz))[0]
    except Exception as e:  # noqa: BLE001
        return {"accepts": True, "runs": False, "error": first_error_line(e), "output": None}
    return {"accepts": True, "runs": True, "error": None, "output": out}


def compare(out: np.ndarray, ref: np.ndarray) -> dict:
    """Finite or not, relative RMS error (RMS of the difference over RMS of the reference) and max |error|."""
    o = out.astype(np.float64)
    r = ref.astype(np.float64)
    finite = bool(np.isfinite(o).all())
    d = o - r
    rel = float(np.sqrt(np.mean(d ** 2)) / np.sqrt(np.mean(r ** 2))) if finite else None
    return {"finite": finite, "non_finite_count": int((~np.isfinite(o)).sum()), "rel_rms": rel,
            "max_abs": float(np.abs(d).max()) if finite else None}


def reference(model: str, variant: str) -> np.ndarray:
    """The PyTorch FP32 output of models.py's module of `model`/`variant` on its sample inputs."""
    import sys

    import torch
    sys.path.insert(0, str(ROOT))
    import models
    module, inputs = models.build(model, variant)
    with torch.no_grad():
        return module(*inputs).numpy()


def non_finite_outputs(path: Path, npz: Path) -> list[dict]:
    """Every node output, in the file's order, that holds inf or NaN when each node output is made a graph output
    (graph optimisation off): [{node, op, output}]. Exposing them is a probe that changes the run: ORT's CPU
    computes FP16 nodes without an FP16 kernel in FP32 and drops the Cast pairs between them, so an FP16
    overflow between two such nodes shows only when probed (README.md)."""
    import onnx
    import onnxruntime as ort
    model = onnx.load(str(path))
    have = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for o in node.output:
            if o and o not in have:
                model.graph.output.append(onnx.ValueInfoProto(name=o))
                have.add(o)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    values = dict(zip(names, sess.run(None, feeds(file_inputs(model), npz))))
    found = []
    for node in model.graph.node:
        for o in node.output:
            v = values.get(o)
            if isinstance(v, np.ndarray) and v.dtype.kind == "f" and not np.isfinite(v).all():
                found.append({"node": node.name, "op": node.op_type, "output": o})
    return found


def float_types(model) -> list[str]:
    """The floating element types of the file's initializers and Constant nodes (what precision it holds)."""
    import onnx
    kinds = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
             onnx.TensorProto.FLOAT8E4M3FN: "float8e4m3fn", onnx.TensorProto.INT8: "int8",
             onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.BFLOAT16: "bfloat16"}
    found = {kinds[t.data_type] for t in model.graph.initializer if t.data_type in kinds}
    for n in model.graph.node:
        for at in n.attribute:
            if at.type == onnx.AttributeProto.TENSOR and at.t.data_type in kinds:
                found.add(kinds[at.t.data_type])
    return sorted(found)


def non_finite_initializers(model) -> list[str]:
    """The names of the file's floating initializers that hold inf or NaN (a quantizer's scale gone to inf)."""
    from onnx import numpy_helper
    bad = []
    for t in model.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype.kind == "f" and not np.isfinite(np.atleast_1d(a).astype(np.float32)).all():
            bad.append(t.name)
    return bad
