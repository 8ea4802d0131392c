"""The plain ORT session of the graph floor: feeds cast to the declared input types."""

from __future__ import annotations

import numpy as np

from cp_debug.graph.model import load_onnx
from cp_debug.graph.session import cast_feed, run_ort


def test_feeds_are_cast_to_the_declared_types(tiny):
    model = load_onnx(tiny.path)
    as64 = {"x": tiny.x.astype(np.float64), "unused": np.zeros(3)}
    cast = cast_feed(model, as64)
    assert list(cast) == ["x"] and cast["x"].dtype == np.float32
    np.testing.assert_array_equal(run_ort(model, as64)["out"], run_ort(model, {"x": tiny.x})["out"])
