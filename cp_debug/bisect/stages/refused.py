"""A candidate whose library builds its engines but will not run them here — TensorRT for RTX on a GPU it does not
support (an H100 is compute capability 9.0; it runs 8.0, 8.6, 8.9, 12.x) or with no GPU at all.

Its first stage's engine is built, then refused (`backends.trt.trt_engine.EngineRefusedError`); from there on the engine
builds each later stage's engine on the reference's feed (`build_later_stage`) — every graph of the pair is checked to
parse and build — and runs nothing of it. The report keeps the other candidates' results and this one's error; the
run then ends with the library's own line, naming what was built (`refusal`), exit 3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cp_debug.bisect.run_state import CandidateState, ProbeSpec, RunState
from cp_debug.bisect.stages.stage_runner import make_stage_runner

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.backends.trt.trt_engine import EngineRefusedError


def refused_at(state: CandidateState, stage: str, err: "EngineRefusedError") -> None:
    """Record that `state`'s engine of `stage` was built and refused."""
    state.refused = err
    state.built[stage] = err.built.to_json() if err.built is not None else None
    state.settings.setdefault(stage, {})["refused"] = str(err)


def build_later_stage(run: RunState, state: CandidateState, i: int, probes: list[ProbeSpec]) -> None:
    """Build (or find in the cache) `state`'s engine of stage i with `probes` marked, on the reference's feed of that
    stage (it never ran its own): the graph parses and builds, or the build's own one-line error."""
    st = run.subject.stages[i]
    runner = make_stage_runner(run, state.spec, st, probes, calib=run.calib(i))
    with run.progress.step(f"{state.label}: building {st.name}'s engine (not run here)"):
        facts = runner.build(run.ref_feeds[i])
    state.built[st.name] = facts.to_json() if facts is not None else None
    state.settings[st.name] = runner.settings()


def refusal(states: list[CandidateState]) -> "EngineRefusedError | None":
    """The run's last word where a candidate was refused: the first refused one's library line, after what was
    built of it (stage: layers, seconds; "from the cache" where it was built before)."""
    from cp_debug.backends.trt.trt_engine import EngineRefusedError

    state = next((s for s in states if s.refused is not None), None)
    if state is None:
        return None
    err = state.refused
    done = [f"{stage} ({_facts(f)})" for stage, f in state.built.items()]
    others = [s.label for s in states if s.refused is not None and s is not state]
    also = f"; {', '.join(others)} too" if others else ""
    return EngineRefusedError(f"{state.label}: {err.library} built the engines of {' and '.join(done)} (they parse "
                              f"and build) but cannot run them here: {err.reason}{also}", library=err.library,
                              reason=err.reason)


def _facts(built: dict | None) -> str:
    if built is None:
        return "from the cache"
    return f"{built['layers']} layers, {built['seconds']:.1f} s"
