"""A runtime that computes the user's file wrong, named as the runtime's (issue 86, item 4; issue 108, item 1).

A deployed FP8 Q/DQ file (ModelOpt's, ONNX Runtime's quantize_static) runs here with ONNX Runtime's graph
optimisations off (`backends/ort/ort_precision.FP8_ORT_OPT_LEVEL`): at its default level ONNX Runtime 1.32 removes the
ReLU in front of a float8 QuantizeLinear (its level-2 rule `ReluQuantRewrite`, an INT8 habit; float8's range is
signed) and computes another function — 1.36 against FP8's own 0.038 on a CNN — while 1.30 refuses such graphs at
that level. A user deploys at the default level unless told otherwise, so the bisect's verdict (judged on the file
as written) is half the story: the same file is run once more at ONNX Runtime's default level on the reference's
stage inputs, its outputs compared with the reference's. Where the default level is beyond FP8's budget and well
past the level the bisect ran, the deployment as it runs is wrong: the candidate's verdict is `diverged` (exit 1),
its line naming the setting that cures it — the one rule disabled (`disabled_optimizers`), else the highest
optimisation level that computes it right — with the numbers measured for each. A default level that refuses the
graph is said in the precision notes (the deployment fails loudly, never silently wrong).

A user's float16 file run on the CPU with its float16 storage emulated (the default, `ort_runner.half_mode`) is never
made a session of as written: where ONNX Runtime's CPU provider dies making one at its default level (1.32 on a float16
`Transpose` into a `MatMul`: BeatNet's FP16 file, `backends/ort/ort_crash.py`), the deployment dies with no message,
so the candidate's verdict is `diverged` (exit 1) in the words native mode stops with (exit 3), the level that loads it
the cure, and a warning says it; the emulation's numbers follow as judged. Cost: one child (Python, ONNX Runtime and
a session at the default level: 0.2 s on a small file) per float16 file, once a file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cp_debug.backends.spec import Capability
from cp_debug.bisect.run_state import CandidateState, RunState

WORSE = 4.0  # the default level's error this many times the bisect's level's (and beyond FP8's budget): a fault


# the settings tried as cures, in the order said: ONNX Runtime's rule that removes a ReLU before a QuantizeLinear
# disabled alone (every other optimisation kept), then the levels below the default
CURES = ((("ORT_ENABLE_ALL", ("ReluQuantRewrite",)), "disabled_optimizers=['ReluQuantRewrite']"),
         (("ORT_ENABLE_BASIC", ()), "graph_optimization_level=ORT_ENABLE_BASIC"))


@dataclass(frozen=True)
class RuntimeFault:
    """What ONNX Runtime's default options make of the candidate's FP8 file: `text`, the finding; `wrong`: its
    outputs are computed wrong there (a verdict: diverged), else a refusal (a note)."""

    text: str
    wrong: bool
    stage: str = ""
    default: float = math.nan  # the outputs' rel. RMSE at the default level
    off: float = math.nan  # with every optimisation off (the level the bisect ran)
    cure: str = "graph_optimization_level=ORT_DISABLE_ALL"
    cured: float = math.nan  # with `cure`
    judged: str = "every optimisation off"  # how the bisect ran the file (said before its verdict)

    def to_json(self) -> dict:
        return {"stage": self.stage, "default_rel_rmse": self.default, "off_rel_rmse": self.off, "cure": self.cure,
                "cured_rel_rmse": self.cured, "wrong": self.wrong}


def runtime_fault(run: RunState, state: CandidateState) -> RuntimeFault | None:
    """The finding for `state`'s deployed files at ONNX Runtime's default options (a float16 file it dies making a
    CPU session of, else an FP8 file it computes wrong or refuses), or None."""
    return half_crash(run, state) or fp8_runtime_fault(run, state)


def half_crash(run: RunState, state: CandidateState) -> RuntimeFault | None:
    """A float16 file run here with its float16 storage emulated on the CPU that ONNX Runtime dies making a session
    of as written at its default level (module docstring), or None: a candidate's deployed file (`SPEC@DIR`), else
    the --onnx file an ONNX Runtime CPU candidate runs as its own (a float16 file converts to itself). Where the
    reference runs that --onnx file on ONNX Runtime's CPU, a warning says it once (the reference has no verdict). A
    file past `INLINE_LIMIT` bytes of tensors is not tried (a second whole session of it in a child, its weights
    loaded twice: as native mode's check)."""
    from cp_debug.backends.ort.ort_runner import half_mode

    if half_mode() == "native":
        return None
    given = _given_file(run)
    if given is not None and _runs_file(run.ref_spec):
        crash = _file_crash(*given)
        text = _crash_text(given[1], crash) if crash is not None else None
        if text is not None and f"{run.ref_label} (the reference): {text}" not in run.warnings:
            run.warnings.append(f"{run.ref_label} (the reference): {text}")
    files = run.deployed.get(state.label)
    if state.refused is not None or not _runs_file(state.spec):
        return None
    pairs = list(zip(files.stages, files.files)) if files is not None else [given] if given is not None else []
    for st, path in pairs:  # one child a file (`file_crash`'s cache)
        crash = _file_crash(st, path)
        if crash is not None:
            text = _crash_text(path, crash)
            if not any(w.endswith(f": {text}") for w in run.warnings):  # the reference's said it of the same file
                run.warnings.append(f"{state.label}: {text}")
            level = f"graph_optimization_level={crash.loads}" if crash.loads else ""
            return RuntimeFault(text, True, st.name, cure=level, judged="float16 storage emulated in a float32 graph")
    return None


def _runs_file(spec) -> bool:
    """Whether `spec` runs a file as written on ONNX Runtime's CPU (INT8 quantizes it into another)."""
    return spec.can(Capability.ORT_SESSIONS) and spec.device == "cpu" and spec.precision != "int8"


def _given_file(run: RunState):
    """The (stage, path) of the --onnx file the run bisects (one stage), else None."""
    from pathlib import Path

    source = getattr(run.subject.facts, "source", None)
    if getattr(run.subject.facts, "kind", None) != "onnx" or not source or len(run.subject.stages) != 1:
        return None
    return run.subject.stages[0], Path(source)


def _file_crash(st, path):
    """`ort_crash.file_crash` of `path` where `st`'s graph holds float16 and is small enough, else None."""
    from cp_debug.backends.ort.ort_crash import file_crash
    from cp_debug.graph.onnx_files import INLINE_LIMIT, total_nbytes
    from cp_debug.precision.half_storage import holds_half_constants

    graph = st.onnx()
    return file_crash(path) if holds_half_constants(graph) and total_nbytes(graph) < INLINE_LIMIT else None


def _crash_text(path, crash) -> str:
    cure = f"deploy with graph_optimization_level={crash.loads}" if crash.loads else "no level of it runs it"
    return (f"runtime fault: {path.name}: " + crash.said("this float16 file as written") + f" — {crash.level} "
            f"is ONNX Runtime's default: deployed with its default options it dies with no message; {cure}")


def fp8_runtime_fault(run: RunState, state: CandidateState) -> RuntimeFault | None:
    """The finding for `state`'s deployed FP8 file at ONNX Runtime's default options, or None (no such file, no
    ONNX Runtime session runs it, or the default level computes it as well as the bisect's level)."""
    from cp_debug.compare import noise
    from cp_debug.precision.held import file_precision

    spec = state.spec
    if not spec.can(Capability.ORT_SESSIONS) or spec.onnx_dir is None or state.refused is not None \
            or state.judged_at != "fp8":
        return None
    budget = noise.budget("fp8")
    for i, st in enumerate(run.subject.stages):
        model = run.stage_of(state.label, i).onnx()
        ref = run.ref_outputs.get(i)
        if ref is None or file_precision(model) != "fp8":
            continue
        feed = run.ref_feeds[i]
        off = _error(model, feed, ref, spec.device, "ORT_DISABLE_ALL")
        try:
            on = _error(model, feed, ref, spec.device, "ORT_ENABLE_ALL")
        except Exception as err:  # noqa: BLE001 - the runtime's refusal, said in its words
            return RuntimeFault(f"ONNX Runtime {_version()} refuses this FP8 file at its default graph optimisation "
                                f"level (ORT_ENABLE_ALL): {_first_line(err)}; it ran here with them off "
                                f"(ORT_DISABLE_ALL, outputs' rel. RMSE {off:.3g} against the reference): deploy it so",
                                False, st.name, off=off)
        if on > budget and on > WORSE * off:
            cure, cured = _cure(model, feed, ref, spec.device, budget, off)
            return RuntimeFault(
                f"runtime fault: ONNX Runtime {_version()} with its default options (graph_optimization_level "
                f"ORT_ENABLE_ALL) computes this FP8 file wrong: {st.name}'s outputs' rel. RMSE {on:.3g} against the "
                f"reference, {on / budget:.3g}× FP8's budget {budget:.3g}, where the same file with {cure} gives "
                f"{cured:.3g} (every optimisation off, ORT_DISABLE_ALL: {off:.3g}) — the runtime's optimiser, not "
                f"the file nor FP8: deploy with {cure}", True, st.name, on, off, cure, cured)
    return None


def _cure(model, feed: dict, ref: dict, device: str, budget: float, off: float) -> tuple[str, float]:
    """The first of `CURES` that computes the file within FP8's budget and as well as every optimisation off (the
    setting and its error); ORT_DISABLE_ALL (and `off`) where none does."""
    for (level, disabled), said in CURES:
        try:
            err = _error(model, feed, ref, device, level, disabled)
        except Exception:  # noqa: BLE001 - a setting this runtime does not take is no cure
            continue
        if err <= budget and err <= WORSE * off:
            return said, err
    return "graph_optimization_level=ORT_DISABLE_ALL", off


def _error(model, feed: dict, ref: dict, device: str, level: str, disabled: tuple[str, ...] = ()) -> float:
    """The largest relative RMS error of `model`'s outputs on `feed` against `ref`, at ONNX Runtime level `level`
    with the optimisers named in `disabled` off."""
    from cp_debug.graph.session import cast_feed, point_at_weights, session_source
    from cp_debug.ort_sessions import open_session, session_options

    so = session_options(level=level, quiet=True)
    point_at_weights(so, model)
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    with session_source(model) as src:
        kwargs = {"disabled_optimizers": list(disabled)} if disabled else {}
        sess = open_session(src, so, providers, **kwargs)
    names = [o.name for o in sess.get_outputs() if o.name in ref]
    got = sess.run(names, cast_feed(model, feed))
    worst = 0.0
    for name, value in zip(names, got):
        r, v = np.asarray(ref[name], np.float64), np.asarray(value, np.float64)
        if r.shape != v.shape or not r.size:
            continue
        scale = float(np.sqrt(np.mean(r ** 2))) or 1.0
        err = float(np.sqrt(np.mean((v - r) ** 2))) / scale
        worst = max(worst, err if np.isfinite(err) else float("inf"))  # NaN / Inf outputs: as wrong as can be
    return worst


def _version() -> str:
    import onnxruntime as ort

    return ort.__version__


def _first_line(err: BaseException) -> str:
    from cp_debug.errors import first_line

    return first_line(err)[:300]
