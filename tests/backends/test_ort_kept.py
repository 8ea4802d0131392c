"""ONNX Runtime sessions kept between a server's commands (`backends/ort_kept.py`): the next command's runner of the
same key takes the session and says what making it said; anything else makes its own; nothing is kept outside the
server, after a failed run, or past the limit. Real sessions (CPU provider) throughout, the commands' third-party
warnings caught as the CLI catches them (`cli/_quiet.ThirdParty`)."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from cp_debug.backends import ort_kept
from cp_debug.backends.ort_runner import OrtRunner
from cp_debug.backends.spec import BackendSpec
from cp_debug.cli._quiet import ThirdParty

FP16 = BackendSpec.parse("ort-cpu-fp16")


@pytest.fixture(scope="module")
def overflowing() -> onnx.ModelProto:
    """x @ w → relu, w holding a value past float16's range: the FP16 conversion warns while the graph is prepared."""
    w = np.full((4, 4), 0.5, np.float32)
    w[0, 0] = 1e6
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
                          "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 4])],
                          [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, ["n", 4])],
                          [numpy_helper.from_array(w, "w")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


FEED = {"x": np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)}


def _command(model, spec=FP16, feed=FEED, threads=1, extra=("y",)):
    """One 'command': a runner made, run and let go under the CLI's capture; (outputs, session, warnings, counts)."""
    with ThirdParty() as tp:
        with OrtRunner(model, spec, extra_outputs=extra, threads=threads) as r:
            out = r.infer(feed)
            sess = r._sess
        said = [(w.source, w.message, w.count) for w in tp.warnings()]
    return out, sess, said, ort_kept.command_done()[:2]


def test_the_next_command_takes_the_session_and_says_what_making_it_said(overflowing):
    with ort_kept.keep_between():
        out1, sess1, said1, counts1 = _command(overflowing)
        assert ort_kept.described() == ["1 ONNX Runtime session(s) of the last command"]
        out2, sess2, said2, counts2 = _command(overflowing)
    assert counts1 == (0, 1) and counts2 == (1, 0)
    assert sess2 is sess1  # the same session, not made again
    assert all(np.array_equal(out1[k], out2[k]) for k in out1) and set(out1) == {"z", "y"}
    assert any("overflow float16" in m for _, m, _ in said1)  # the FP16 conversion's warning, made once …
    assert said2 == said1  # … and said again, counted as often, by the command that took the session
    assert ort_kept.described() == []  # the server's end lets all go


def test_another_key_makes_its_own_and_what_a_command_did_not_use_goes(overflowing):
    with ort_kept.keep_between():
        _, sess1, _, _ = _command(overflowing)
        _, sess2, _, counts = _command(overflowing, spec=BackendSpec.parse("ort-cpu"))  # another precision
        assert counts == (0, 1) and sess2 is not sess1
        _, sess3, _, counts = _command(overflowing)  # the FP16 session went with the command that did not use it
        assert counts == (0, 1) and sess3 is not sess1
        _, sess4, _, counts = _command(overflowing, threads=2)  # any option is part of the key
        assert counts == (0, 1) and sess4 is not sess3


def test_nothing_is_kept_outside_the_server_after_a_failed_run_or_past_the_limit(overflowing, monkeypatch):
    _, sess1, _, _ = _command(overflowing)
    _, sess2, _, counts = _command(overflowing)
    assert sess2 is not sess1 and counts == (0, 0) and ort_kept.described() == []  # no server: no key, nothing kept
    g = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["z"])], "g",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n"]),
                           helper.make_tensor_value_info("shape", onnx.TensorProto.INT64, [2])],
                          [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, ["a", "b"])])
    reshape = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with ort_kept.keep_between():
        _command(reshape, spec=BackendSpec.parse("ort-cpu"), extra=(),
                 feed={"x": np.zeros(6, np.float32), "shape": np.array([2, 3])})
        assert ort_kept.described() == ["1 ONNX Runtime session(s) of the last command"]
        with pytest.raises(Exception, match="(?i)reshape"):  # ONNX Runtime fails the run: the session is not kept
            _command(reshape, spec=BackendSpec.parse("ort-cpu"), extra=(),
                     feed={"x": np.zeros(6, np.float32), "shape": np.array([4, 4])})
        assert ort_kept.described() == []
    monkeypatch.setenv(ort_kept.SESSIONS_ENV, "0")
    said = []
    with ort_kept.keep_between(said.append):
        _, sess1, _, _ = _command(overflowing)
        _, sess2, _, _ = _command(overflowing)
    assert sess2 is not sess1
    assert said == [f"ONNX Runtime sessions: none kept between commands ({ort_kept.SESSIONS_ENV}=0)"]


def test_what_a_first_run_said_on_fd_2_is_said_again_at_the_next_command_s_first_run():
    """A session that writes lines to fd 2 on its first run at a shape (as ONNX Runtime's CUDA provider does, of
    cuDNN's plans): kept, its next command's first run says nothing itself, and the kept lines stand in, once per
    shape and command."""
    held = ort_kept.Held("k", {}, {})
    line = b"[W:onnxruntime:, conv.cc:1 Plan] No execution plans support the graph.\n"

    def command(fresh: bool):
        ran: set = set()  # the shapes this session has run (a fresh session's first run at each speaks)

        def run(shape):
            if fresh and shape not in ran:
                os.write(2, line)
            ran.add(shape)

        with ThirdParty() as tp:
            spoken: set = set()
            for shape in ((1, 4), (1, 4), (2, 4)):
                ort_kept.first_run(held, spoken, ("run", shape), lambda: run(shape))
            return [(w.message, w.count) for w in tp.warnings()]

    first = command(fresh=True)  # the session made: it speaks on its first run at each shape
    again = command(fresh=False)  # the same session kept, in the next command: it says nothing now
    assert first == again == [(line.decode().strip(), 2)]
    assert not held.spoiled and set(held.runs) == {("run", (1, 4)), ("run", (2, 4))}


def test_all_is_let_go_once_the_process_has_grown_past_its_limit(overflowing, monkeypatch):
    """A session holds more than its graph (ONNX Runtime plans each one's activations): past `_GROWTH` over what the
    process held when it began to keep, the command's end lets every kept session go, and says why."""
    with ort_kept.keep_between():
        _command(overflowing)
        assert ort_kept.described()  # within the limit: kept
        monkeypatch.setattr(ort_kept, "_GROWTH", -(1 << 40))  # any size is past it
        with ThirdParty(), OrtRunner(overflowing, FP16, extra_outputs=["y"], threads=1) as r:
            r.infer(FEED)
        taken, made, gone = ort_kept.command_done()
        assert ort_kept.described() == []  # the server still keeping, nothing held
    assert (taken, made) == (1, 0) and gone.startswith("none kept: the server has grown by")
