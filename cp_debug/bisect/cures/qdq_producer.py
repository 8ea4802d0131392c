"""Who wrote a user's Q/DQ file, read from the file (`qdq_exclude`'s cure is said in that tool's terms; `qdq_removal`
leaves nodes out as that tool's `nodes_to_exclude` does): ONNX Runtime's quantizer (`quantize_static`, optimum's
ORTQuantizer) stamps its metadata `onnx.infer: onnxruntime.quant`; NVIDIA ModelOpt's ONNX quantizer runs ORT's
underneath (the same `onnx.quantize` producer) but writes no such metadata, reads float weights through QuantizeLinear
and holds its scales in FP16 in its default high-precision mode."""

from __future__ import annotations

MODELOPT, ONNXRUNTIME = "modelopt", "onnxruntime"


def producer(model) -> str | None:
    """The tool that wrote a Q/DQ `model` (module docstring), or None where the file does not say."""
    from onnx import TensorProto

    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("onnx.infer") == "onnxruntime.quant":
        return ONNXRUNTIME
    inits = {i.name: i for i in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    fp16 = any(len(n.input) > 1 and n.input[1] in inits and inits[n.input[1]].data_type == TensorProto.FLOAT16
               for n in qdq)
    weight_q = any(n.op_type == "QuantizeLinear" and n.input[0] in inits for n in qdq)
    if model.producer_name == "onnx.quantize" and (fp16 or weight_q):
        return MODELOPT
    return None
