"""Issue 115, item 1: a restoration that cannot be built is one tried-and-said entry, never the whole intervention
(`cures/restore.attempted`, used by every restoration `findings/intervention._measurer` runs).

Two small graphs made here, run by real ONNX Runtime: one it refuses (an Add of two inputs whose shapes cannot
broadcast, shapes declared), one it runs. The refused one is said ("could not be built: …", never back), the next
candidate still runs and is the one confirmed; with CPDEBUG_DEBUG=1 the refusal is raised as it came."""

from __future__ import annotations

import numpy as np
import pytest

from cp_debug.bisect.cures.restore import KEEP, OutputError, Restoration, attempted
from cp_debug.bisect.cures.intervened import Intervention
from cp_debug.bisect.findings.intervention import _until_back


def _run(broken: bool) -> np.ndarray:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    b = [2, 5] if broken else [2, 3]  # [2, 3] + [2, 5]: no broadcast, ONNX Runtime refuses the graph
    graph = helper.make_graph([helper.make_node("Add", ["x", "y"], ["z"], name="add")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
                               helper.make_tensor_value_info("y", TensorProto.FLOAT, b)],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.ones((2, 3), np.float32)
    return sess.run(None, {"x": x, "y": np.ones(b, np.float32)})[0]


def _measure(rs: list[Restoration]) -> OutputError:
    def judged() -> OutputError:
        z = _run(broken=rs[0].probe == "refused")
        err = float(np.abs(z - 2.0).max())
        return OutputError(err, err, err < 1e-6, in_budget=True)
    return attempted(judged)


def test_a_restoration_onnx_runtime_refuses_is_said_and_the_next_one_confirms(monkeypatch):
    monkeypatch.delenv("CPDEBUG_DEBUG", raising=False)
    refused, kept = (Restoration(p, 0, KEEP, nodes=("add",)) for p in ("refused", "kept"))
    tried: list = []
    assert _until_back([refused, kept], tried, _measure)
    first, second = tried
    assert first.after.unbuilt and not first.after.back and second.after.back
    assert "\n" not in first.after.unbuilt and "could not be built: " in first.after.short()
    before = OutputError(5.0, 0.5, False)
    found = Intervention("refused", "kept", before, tuple(tried), 0.0, 0)
    assert found.cure is second and found.keep() == ("add",)
    text = found.text()
    assert text.startswith("confirmed by intervention: kept") and "refused (1 node(s) kept in FP32): could not " \
        "be built: " in text, text
    js = found.to_json()
    assert js["confirmed"] and js["tried"][0]["output_error_after"]["could_not_build"] == first.after.unbuilt
    assert not js["tried"][0]["back"] and "could_not_build" not in js["tried"][1]["output_error_after"]


def test_with_cpdebug_debug_the_refusal_is_raised_as_it_came(monkeypatch):
    monkeypatch.setenv("CPDEBUG_DEBUG", "1")
    with pytest.raises(Exception) as err:
        _measure([Restoration("refused", 0, KEEP)])
    assert type(err.value).__module__.startswith("onnxruntime"), err.value
