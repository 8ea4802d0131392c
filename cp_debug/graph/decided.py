"""Which outputs of an ONNX graph are decisions read at a threshold or an argmax: those a Sigmoid (at 0.5) or a Softmax
(at its argmax) writes, through the ops that only move or reshape their values (paddle2onnx's Identity of PaddleOCR's
classifier Softmax, tf2onnx's Reshape of basic-pitch's note maps). Read from the graph alone, by bisect's decisions,
keep-fp32's and fix's searches alike.
"""

from __future__ import annotations

__all__ = ["SHAPE_ONLY", "decided_of"]

SHAPE_ONLY = ("Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze")  # they move values, never change them


def decided_of(model, names=None) -> dict[str, str]:
    """The outputs `names` of an ONNX model (default: its graph outputs) that a Sigmoid or a Softmax writes, through
    Identities and, for a Sigmoid, the ops that only reshape it: output name -> op ("Softmax@AXIS" for a Softmax over
    another axis than the last). bisect's decisions (`findings/decisions.decided_outputs`) and keep-fp32's and fix's
    searches read the same where no `--metric` is declared."""
    if names is None:
        names = [o.name for o in model.graph.output]
    writers = {t: n for n in model.graph.node for t in n.output}

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)

    def op(name: str) -> str | None:
        seen = set()
        shaped = False
        while (n := writers.get(name)) is not None and n.op_type in SHAPE_ONLY and name not in seen:
            seen.add(name)
            shaped, name = shaped or n.op_type != "Identity", n.input[0]
        if n is None or n.op_type != "Softmax":
            return n.op_type if n is not None else None
        if shaped:  # a Softmax's classes reshaped: its axis no longer known
            return None
        axis = next((a.i for a in n.attribute if a.name == "axis"), -1 if opset >= 13 else 1)
        return "Softmax" if axis == -1 else f"Softmax@{axis}"  # the classes on that axis, read at its argmax

    return {n: o for n in names if (o := op(n)) is not None and o.split("@")[0] in ("Sigmoid", "Softmax")}
