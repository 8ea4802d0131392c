"""An FP8 ONNX file laid out as NVIDIA ModelOpt's ONNX quantizer writes one (`modelopt.onnx.quantization.quantize(
..., quantize_mode="fp8")`, nvidia-modelopt 0.47.0, read here from its output on tests/backends/test_ort_fp8.py's CNN):
opset 19, IR 10; each quantized node's weight kept as its float32 initializer and read through QuantizeLinear →
DequantizeLinear per output channel (`axis` 0, scales `<weight>_scale` [C], float8e4m3fn zero points
`<weight>_zero_point` [C]); its data input through a per-tensor QuantizeLinear → DequantizeLinear (`<tensor>_scale`,
`<tensor>_zero_point` scalars) named `<tensor>_QuantizeLinear` / `<tensor>_DequantizeLinear` with outputs
`…_Output`. ModelOpt chooses which nodes to quantize (of that CNN, only the last conv) and calibrates by entropy;
this writer takes the nodes and calibrates by max — the layout, which is what cp_debug reads, is ModelOpt's
(tests/bisect/test_modelopt_files.py compares it with ModelOpt's own output where nvidia-modelopt is installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx


def modelopt_fp8(fp32: Path, out: Path, nodes: list[str], feed: dict[str, np.ndarray]) -> Path:
    import ml_dtypes
    import onnx_graphsurgeon as gs

    from cp_debug.precision.fp8 import calibrate_max

    model = onnx.version_converter.convert_version(onnx.load(fp32), 19)
    graph = gs.import_onnx(model)
    chosen = [n for n in graph.nodes if n.name in nodes]
    amax = calibrate_max(model, [n.inputs[0].name for n in chosen], [feed])
    f8 = ml_dtypes.float8_e4m3fn
    for node in chosen:
        x, w = node.inputs[0], node.inputs[1]
        scale = gs.Constant(f"{x.name}_scale", np.array(amax[x.name] / 448, np.float32))
        zero = gs.Constant(f"{x.name}_zero_point", np.zeros((), f8))
        node.inputs[0] = _pair(graph, x, scale, zero, {})
        values = np.asarray(w.values, np.float32)
        per = (np.abs(values.reshape(values.shape[0], -1)).max(axis=1) / 448).astype(np.float32)
        wscale = gs.Constant(f"{w.name}_scale", per)
        wzero = gs.Constant(f"{w.name}_zero_point", np.zeros(per.shape, f8))
        node.inputs[1] = _pair(graph, w, wscale, wzero, {"axis": 0})
    graph.cleanup().toposort()
    written = gs.export_onnx(graph)
    written.ir_version = 10
    del written.opset_import[:]
    written.opset_import.append(onnx.helper.make_opsetid("", 19))
    onnx.save(written, out)
    return out


def _pair(graph, tensor, scale, zero, attrs: dict):
    import ml_dtypes
    import onnx_graphsurgeon as gs

    q = gs.Variable(f"{tensor.name}_QuantizeLinear_Output", dtype=ml_dtypes.float8_e4m3fn, shape=tensor.shape)
    dq = gs.Variable(f"{tensor.name}_DequantizeLinear_Output", dtype=np.float32, shape=tensor.shape)
    graph.nodes.append(gs.Node("QuantizeLinear", f"{tensor.name}_QuantizeLinear", dict(attrs), [tensor, scale, zero],
                               [q]))
    graph.nodes.append(gs.Node("DequantizeLinear", f"{tensor.name}_DequantizeLinear", dict(attrs), [q, scale, zero],
                               [dq]))
    return dq
