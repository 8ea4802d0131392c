"""`bisect --generate` loads each file as few times as its answer needs (issue 116 item 5; docs/llm.md "Size"): the
reference's file once — its decode runs on the reference's probed session (`bisect/stages/lent.py`), not on a session
of its own — and the candidate's graph as deployed once — its decode's session of the file as written runs it
(`unprobed.as_written`) and its outputs are the intervention's "before" (`CandidateState.as_deployed`) — with the
answer of the corpus file unchanged (step 7's flip, lm_head's level-1 cure, the root at the logits); the reference's
session is made on a helper thread while the candidate's file is decoded and the deployed files are mapped
(`lent.start_lending`). Every session the run makes is counted where ONNX Runtime is asked for it
(`ort_sessions.open_session`, the one door), each told by its graph."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from cp_debug.bisect.subjects.greedy import level4_nodes
from tests.bisect.test_llm_files import LLM, N, PROMPT


def test_generate_loads_the_reference_once_and_the_graph_as_deployed_once(tmp_path, monkeypatch):
    from cp_debug import ort_sessions
    from cp_debug.api import bisect_request as groups
    from cp_debug.api.bisect_run import run_request
    from cp_debug.bisect.stages import lent

    fp32, int4 = LLM / "qwen3_massive/fp32/model.onnx", LLM / "qwen3_massive/int4/model.onnx"
    plain = onnx.load(str(int4), load_external_data=False)
    ins, outs = [i.name for i in plain.graph.input], [o.name for o in plain.graph.output]
    made: list[tuple[str, str]] = []  # (the file it is of, how: "path", "probed", "as deployed", "other")
    threads: list[str] = []  # the thread each session of the reference's file was made on
    begun: list[str] = []  # on the main thread, in order: the reference's helper thread started, the INT4 decode's
    real = ort_sessions.open_session

    class Started(lent.threading.Thread):
        def start(self):
            begun.append(self.name)
            super().start()

    monkeypatch.setattr(lent.threading, "Thread", Started)

    def counted(src, so=None, providers=("CPUExecutionProvider",), **kwargs):
        import threading

        if isinstance(src, str):
            made.append(("int4" if "int4" in str(src) else "fp32", "path"))
            begun.append(f"{made[-1][0]} {threading.current_thread().name}")
        else:
            m = onnx.load_from_string(bytes(src))
            which = "int4" if any(n.op_type == "MatMulNBits" for n in m.graph.node) else "fp32"
            names_in, names_out = [i.name for i in m.graph.input], [o.name for o in m.graph.output]
            same_levels = which == "int4" and len(level4_nodes(m)) == len(level4_nodes(plain))
            how = ("probed" if len(names_out) > len(outs) else
                   "as deployed" if names_in == ins and names_out == outs and same_levels else "other")
            made.append((which, how))
            if which == "fp32":
                threads.append(threading.current_thread().name)
        return real(src, so, providers, **kwargs)

    monkeypatch.setattr(ort_sessions, "open_session", counted)
    prompt = tmp_path / "prompt.npz"
    np.savez(prompt, input_ids=PROMPT)
    subject = groups.samples_group(groups.model_group(onnx_model=fp32, generate=N), prompt)
    request = groups.bisect_request(groups.backends_group(f"ort,ort@{int4.parent}"), subject, groups.options_group())
    report = run_request(request)

    said = " ".join(report.warnings)
    assert "greedy step 7: token 23 → 225" in said
    assert "accuracy_level=1 on /lm_head/MatMul_Q4 alone gives the reference's tokens back" in said
    (cand,) = report.candidates
    assert cand.root_cause is not None and cand.root_cause.probe == "logits"
    # the reference's file: one session, its probed one (the decode's and the probed run's), none of the file itself
    assert [how for which, how in made if which == "fp32"] == ["probed"]
    # made on a helper thread while the main thread decoded the candidate's file and mapped the deployed files
    # (`lent.start_lending`): the candidate's decode session opened on the main thread once that thread had started
    assert threads == ["cpdebug-reference-session"]
    assert begun == ["cpdebug-reference-session", "int4 MainThread"]
    phases = report.settings["phases"]  # the candidate's decode in the decode's phase, the mapping in its own
    assert {"decode", f"ort@{int4.parent}: deployed files"} <= set(phases)
    # the candidate's graph as deployed: its decode's session of the file as written (its load check's proof), kept
    # and run on the step's feed (`unprobed.as_written`): no session of it from bytes (a kernel check's, made to run
    # it), not a second for the probing check, nor a third for the intervention
    assert made.count(("int4", "path")) == 1
    assert made.count(("int4", "as deployed")) == 0
    assert cand.probe_effect["model"]["outputs"]  # the graph as deployed ran, compared with the probed
    from cp_debug.ort_sessions import _HELD

    assert not _HELD  # taken, and let go of


def test_twin_weights_correlated_on_every_kth_row():
    """A weight past `_SAMPLED` values is correlated on every k-th row (`block_forms._unit`), the same rows of two
    weights of one shape, whatever their layout (a dequantized weight is a transposed view): its rounding to 15
    levels still correlates above 0.95 with it, as the whole weight does to 0.002, an independent weight within 0.01
    of 0 — the pairing's 0.9 and 0.1 hold."""
    from cp_debug.probes.block_forms import _SAMPLED, _unit

    rng = np.random.default_rng(0)
    w = rng.standard_normal((896, 1280)).astype(np.float32)  # 1.1 M values: every 3rd row
    assert w.size > _SAMPLED
    step = np.abs(w).max() / 7
    rounded = np.ascontiguousarray((np.round(w / step) * step).T).T  # the same values, a transposed view
    other = rng.standard_normal(w.shape).astype(np.float32)
    (shape, x), (_, y), (_, z) = _unit(w), _unit(rounded), _unit(other)
    assert shape == (896, 1280) and x.size == 299 * 1280 <= _SAMPLED
    full = np.corrcoef(w.ravel(), rounded.ravel())[0, 1]
    assert float(x @ y) > 0.95 and abs(float(x @ y) - full) < 2e-3
    assert abs(float(x @ z)) < 0.01


@pytest.mark.parametrize("refused", ["reference", "candidate"])
def test_generate_on_a_file_onnx_runtime_refuses_is_its_line(tmp_path, refused):
    """A decoder file ONNX Runtime will not load (a node of an op it has no kernel for, which onnx's checker lets pass
    in a custom domain), as the reference or as the candidate of `--generate`: the file's load check's line, exit 3
    — the decode's session raised it as an internal error (exit 70) before, the reference's own check now coming
    where its probed session cannot be made (`lent.py`)."""
    import shutil

    from cp_debug.api import bisect_request as groups
    from cp_debug.api.bisect_run import run_request
    from cp_debug.errors import CpDebugError, ExitCode

    files = {}
    for side, rel in (("reference", "qwen3_massive/fp32"), ("candidate", "qwen3_massive/int4")):
        folder = tmp_path / side
        shutil.copytree(LLM / rel, folder)
        if side == refused:
            model = onnx.load(str(folder / "model.onnx"))
            node = next(n for n in model.graph.node if n.op_type == "Sigmoid")
            node.op_type, node.domain = "NoSuchOp", "com.microsoft"
            onnx.save(model, str(folder / "model.onnx"))
        files[side] = folder / "model.onnx"
    prompt = tmp_path / "prompt.npz"
    np.savez(prompt, input_ids=PROMPT)
    subject = groups.samples_group(groups.model_group(onnx_model=files["reference"], generate=4), prompt)
    pairs = groups.backends_group(f"ort,ort@{files['candidate'].parent}")
    with pytest.raises(CpDebugError, match="cannot load this file: .*NoSuchOp") as err:
        run_request(groups.bisect_request(pairs, subject, groups.options_group()))
    assert err.value.exit_code == ExitCode.BACKEND and int(ExitCode.BACKEND) == 3
    assert ("(--onnx)" in str(err.value)) == (refused == "reference")


def test_the_prompts_forward_is_each_decodes_first_step_not_run_again(tmp_path, monkeypatch):
    """No token flips (the corpus Llama's INT4 file): the forward bisected is the prompt's prefill, each decode's first
    step on the same session with the same feed — the reference's on its probed session: its outputs are the reference
    stage's run (`lent.lent_outputs`); the candidate's on its file as written: its graph as deployed's run
    (`ort_sessions.first_of`). The FP32 session runs the N steps and the noise floor's run only, the INT4 file's the N
    steps, and every probe's values are those of runs made again (the answer the same with the reuse refused)."""
    from cp_debug import ort_sessions
    from cp_debug.api import bisect_request as groups
    from cp_debug.api.bisect_run import run_request
    from cp_debug.bisect.stages import lent

    fp32, int4 = LLM / "llama/fp32/model.onnx", LLM / "llama/int4/model.onnx"
    prompt = tmp_path / "prompt.npz"
    np.savez(prompt, input_ids=PROMPT)
    runs: list[int] = []  # the FP32 probed session's runs, one entry each
    written: list[int] = []  # the runs of the INT4 file's session made from its path (its decode's, kept)
    real = ort_sessions.open_session

    class Counted:
        def __init__(self, sess, into: list):
            self._sess, self._into = sess, into

        def __getattr__(self, name):
            return getattr(self._sess, name)

        def run(self, *args, **kwargs):
            self._into.append(1)
            return self._sess.run(*args, **kwargs)

    plain = len(onnx.load(str(fp32), load_external_data=False).graph.output)

    def counted(src, so=None, providers=("CPUExecutionProvider",), **kwargs):
        sess = real(src, so, providers, **kwargs)
        probed_fp32 = not isinstance(src, str) and len(sess.get_outputs()) > plain and not any(
            n.op_type == "MatMulNBits" for n in onnx.load_from_string(bytes(src)).graph.node)
        if isinstance(src, str) and "int4" in src:
            return Counted(sess, written)
        return Counted(sess, runs) if probed_fp32 else sess

    def bisect():
        subject = groups.samples_group(groups.model_group(onnx_model=fp32, generate=N), prompt)
        return run_request(groups.bisect_request(groups.backends_group(f"ort,ort@{int4.parent}"), subject,
                                                 groups.options_group()))

    monkeypatch.setattr(ort_sessions, "open_session", counted)
    report = bisect()
    assert any("decodes the same" in w for w in report.warnings)
    assert len(runs) == N + 1  # the decode's N steps (the first of them the forward's) and the noise floor's run
    assert len(written) == N  # the decode's N steps, the first of them the graph as deployed's
    runs.clear()
    written.clear()
    from cp_debug.bisect.stages import stage_whole

    monkeypatch.setattr(lent, "lent_outputs", lambda *a: None)
    monkeypatch.setattr(stage_whole, "lent_outputs", lambda *a: None)
    monkeypatch.setattr(ort_sessions, "first_of", lambda path: None)
    again = bisect()
    assert (len(runs), len(written)) == (N + 2, N + 1)
    (a,), (b,) = report.candidates, again.candidates
    assert a.outcome == b.outcome
    def values(c):  # every probe's propagated and local error, exactly
        return {r.probe: (r.status, r.diff and r.diff.rel_rmse, r.local and r.local.rel_rmse) for r in c.results}

    assert values(a) == values(b) and any(r.diff is not None for r in a.results)
    assert a.probe_effect == b.probe_effect and a.probe_effect["model"]["outputs"]  # the graph as deployed: the same


def test_without_a_lending_the_candidate_is_decoded_by_the_references_decode(tmp_path, monkeypatch):
    """Where no helper thread makes the reference's session (a server keeping its sessions: `lent.start_lending`
    returns at once), the candidate's decode is run by the reference's (`PendingDecode.candidate`, once): the same
    flip and cure as with the lending, its file's session made once, on the main thread."""
    import threading

    from cp_debug import ort_sessions
    from cp_debug.api import bisect_request as groups
    from cp_debug.api.bisect_run import run_request
    from cp_debug.backends.ort import ort_kept

    fp32, int4 = LLM / "qwen3_massive/fp32/model.onnx", LLM / "qwen3_massive/int4/model.onnx"
    written: list[str] = []  # the thread each session of the INT4 file as written was made on
    real = ort_sessions.open_session

    def counted(src, so=None, providers=("CPUExecutionProvider",), **kwargs):
        if isinstance(src, str) and "int4" in src:
            written.append(threading.current_thread().name)
        return real(src, so, providers, **kwargs)

    monkeypatch.setattr(ort_sessions, "open_session", counted)
    monkeypatch.setattr(ort_kept, "keeping", lambda: True)  # as in a server: no lending
    prompt = tmp_path / "prompt.npz"
    np.savez(prompt, input_ids=PROMPT)
    subject = groups.samples_group(groups.model_group(onnx_model=fp32, generate=N), prompt)
    report = run_request(groups.bisect_request(groups.backends_group(f"ort,ort@{int4.parent}"), subject,
                                               groups.options_group()))
    said = " ".join(report.warnings)
    assert "greedy step 7: token 23 → 225" in said
    assert "accuracy_level=1 on /lm_head/MatMul_Q4 alone gives the reference's tokens back" in said
    assert written == ["MainThread"]
