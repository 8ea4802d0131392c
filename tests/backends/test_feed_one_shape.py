"""A 0-d value and its 1-element twin are one shape at a graph's input (`backends.feed.check_feed`), as they are
when outputs are compared: ONNX Runtime gives DynamicQuantizeLinear's scale as a scalar where ddddocr's file declares
[1], and a lockstep segment cut after it was refused ("input 'input1_scale' has shape () (rank 0); the model wants
rank 1: [1]", exit 2) on `--keep-fp32` and on any FP16 lane with nodes kept in FP32."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from cp_debug.backends.feed import check_feed
from cp_debug.errors import BadInputError


def test_a_scalar_feeds_a_one_element_input_and_back():
    assert check_feed({"s": np.float32(2.0)}, {"s": (np.dtype(np.float32), [1])})["s"].shape == (1,)
    assert check_feed({"s": np.array([2.0], np.float32)}, {"s": (np.dtype(np.float32), [])})["s"].shape == ()
    assert check_feed({"s": np.float32(2.0)}, {"s": (np.dtype(np.float32), ["n"])})["s"].shape == (1,)


def test_other_ranks_and_sizes_are_still_refused():
    for value, dims in ((np.float32(2.0), [3]), (np.ones(2, np.float32), []), (np.ones((1, 1), np.float32), [1]),
                        (np.float32(2.0), [1, 1])):
        with pytest.raises(BadInputError):
            check_feed({"s": value}, {"s": (np.dtype(np.float32), dims)})


def test_onnx_runtime_runs_the_reshaped_scalar():
    g = helper.make_graph([helper.make_node("Mul", ["x", "s"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4]),
                           helper.make_tensor_value_info("s", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = check_feed({"x": np.arange(4, dtype=np.float32), "s": np.float32(3.0)},
                      {"x": (np.dtype(np.float32), [4]), "s": (np.dtype(np.float32), [1])})
    np.testing.assert_array_equal(sess.run(None, feed)[0], [0, 3, 6, 9])
    onnx.checker.check_model(m)
