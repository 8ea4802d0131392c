"""What a graph's form decides for its ONNX Runtime CPU or CUDA session (`ort_runner.py`): whether its float16 is
emulated inside a segment (a node reading another's output), whether its float16 convs may run NHWC."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import onnx


def reads_inside(model: "onnx.ModelProto") -> bool:
    """Whether a node of `model` reads a tensor another of its nodes computes (a Constant's value aside)."""
    made = {t for n in model.graph.node if n.op_type not in ("Constant", "ConstantOfShape") for t in n.output if t}
    return any(t in made for n in model.graph.node for t in n.input)


def nhwc_safe(model: "onnx.ModelProto") -> bool:
    """Whether a float16 graph may run ONNX Runtime's NHWC convs (`prefer_nhwc`): it has convs, and every
    BatchNormalization reads a Conv's or ConvTranspose's output (a 4-D map: the neck's ConvTranspose → BN, which
    the exporter does not fold). On the H100 (onnxruntime-gpu 1.31.1) a float16 BatchNormalization over [N, C, P]
    (the pillar encoder's BatchNorm1d after its Linear) under prefer_nhwc aborts the process
    (`benchmarks/ort_cuda_nhwc_abort.py`)."""
    producer = {t: n.op_type for n in model.graph.node for t in n.output}
    ops = {n.op_type for n in model.graph.node}
    bn_inputs = [n.input[0] for n in model.graph.node if n.op_type == "BatchNormalization"]
    return bool(ops & {"Conv", "ConvTranspose"}) and all(producer.get(t) in ("Conv", "ConvTranspose")
                                                          for t in bn_inputs)
