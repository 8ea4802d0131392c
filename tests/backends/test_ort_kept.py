"""ONNX Runtime sessions kept between a server's commands (`backends/ort/ort_kept.py`): the next command's runner of the
same key takes the session and says what making it said; anything else makes its own; nothing is kept outside the
server, after a failed run, or past the limit. Real sessions (CPU provider) throughout, the commands' third-party
warnings caught as the CLI catches them (`cli/common/quiet.ThirdParty`)."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from cp_debug.backends.ort import ort_kept
from cp_debug.backends.ort.ort_runner import OrtRunner
from cp_debug.backends.spec import BackendSpec
from cp_debug.cli.common.quiet import ThirdParty

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
    """One 'command': a runner made, run and let go under the CLI's capture; (outputs, session, warnings, counts): the
    third-party warnings and cp_debug's own notes raised as warnings (`errors.CpDebugWarning`: FP16 conversion's)."""
    with ThirdParty() as tp, ort_kept.wanted():
        with OrtRunner(model, spec, extra_outputs=extra, threads=threads) as r:
            out = r.infer(feed)
            sess = r._sess
        said = [(w.source, w.message, w.count) for w in tp.warnings()]
        said += [("cp_debug", m, 1) for m in tp.own()]
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


def test_cpu_sessions_are_let_go_once_the_process_has_grown_past_its_limit(overflowing, monkeypatch):
    """A CPU session holds more than its graph (ONNX Runtime plans each one's activations): past `_GROWTH` over what
    the process held when it began to keep, the command's end lets every kept CPU session go, and says why."""
    with ort_kept.keep_between():
        _command(overflowing)
        assert ort_kept.described()  # within the limit: kept
        monkeypatch.setattr(ort_kept, "_GROWTH", -(1 << 40))  # any size is past it
        with ThirdParty(), ort_kept.wanted(), OrtRunner(overflowing, FP16, extra_outputs=["y"], threads=1) as r:
            r.infer(FEED)
        taken, made, gone = ort_kept.command_done()
        assert ort_kept.described() == []  # the server still keeping, nothing held
    assert (taken, made) == (1, 0) and gone.startswith("no CPU session kept: the server has grown by")


def _relu_session():
    """A real CPU session of relu → neg, both outputs: (session, the signature of an input it ran)."""
    import onnxruntime as ort

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["y"], ["z"])], "g",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 4])],
                          [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, ["n", 4]),
                           helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 4])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"x": np.ones((256, 4), np.float32)}
    sess.run(None, feed)
    return sess, ort_kept.signature(feed)


def test_an_idle_server_shrinks_its_cuda_sessions_and_lets_go_those_that_cannot(monkeypatch):
    """`shrink_kept` runs each kept CUDA session's `shrink` (here `shrink_arena` on real CPU sessions: one on the
    arena it has, one on a CUDA arena it lacks, which ONNX Runtime refuses); the refused one is let go, the other
    kept, a CPU session left alone. `after_command` lets every CUDA session go where the card is less than half
    free."""
    from cp_debug.backends.ort.ort_session import shrink_arena

    calls = []

    def held(arena: str, device: str = "cuda") -> ort_kept.Held:
        sess, sig = _relu_session()
        h = ort_kept.Held(arena, {"_sess": sess}, {}, device=device)
        h.shrink = lambda: (calls.append(arena), shrink_arena(sess, sig, arena))
        return h

    with ort_kept.keep_between():
        for h in (held("cpu:0"), held("gpu:0"), held("cpu", device="cpu")):
            ort_kept.put(h)
        assert ort_kept.after_command() is None  # no CUDA here to ask how full the card is: nothing goes
        said = ort_kept.shrink_kept()
        assert calls == ["cpu:0", "gpu:0"]  # CUDA sessions only
        assert said == "the arenas of 1 kept CUDA session(s) given back; 1 that could not shrink let go"
        assert sorted(ort_kept._held) == ["cpu", "cpu:0"]
        monkeypatch.setattr(ort_kept, "_card", lambda: (30 << 30, 80 << 30))  # 30 of 80 GiB free
        assert ort_kept.after_command() == "no CUDA session kept: 30.0 of the card's 80.0 GiB free, less than 50%"
        assert sorted(ort_kept._held) == ["cpu"]
        assert ort_kept.shrink_kept() is None  # no CUDA session left: nothing to say


def test_shrink_arena_runs_on_zeros_of_the_signature_and_refuses_an_arena_the_session_lacks():
    from cp_debug.backends.ort.ort_session import shrink_arena

    sess, _ = _relu_session()
    shrink_arena(sess, (("x", (64, 4), "torch.float32"),), "cpu:0")  # a torch tensor's dtype, as a bound run has it
    with pytest.raises(Exception, match="gpu:0"):
        shrink_arena(sess, (("x", (64, 4), "float32"),))  # a CPU session has no CUDA arena to shrink


def test_what_a_taken_session_said_is_said_again_outside_another_thread_s_block(monkeypatch):
    """A session taken while another thread makes its own, heard (a served bisect's candidate taken while its
    reference is made): the taken one's lines are said again only once that block is over, so they are not kept as
    the other session's too (and said twice by the next command)."""
    import threading

    from cp_debug.export import said as said_mod

    real, waiting = said_mod.SPEAKING, threading.Event()

    class Watched:  # the process's lock, telling when the other thread asks for it
        def acquire(self, *args, **kw):
            if threading.current_thread() is not threading.main_thread():
                waiting.set()
            return real.acquire(*args, **kw)

        def release(self):
            real.release()

    monkeypatch.setattr(said_mod, "SPEAKING", Watched())
    other = threading.Thread(target=ort_kept._say_again, args=({"stderr": "a taken session's line\n"},))
    with said_mod.Said(fd2_only=True) as heard:  # this thread making its session, heard
        other.start()
        assert waiting.wait(timeout=60)  # the other thread waits for the block to end …
    other.join()
    assert heard.heard_fd2 and "a taken session's line" not in heard.to_json()["stderr"]  # … so none of it is kept
