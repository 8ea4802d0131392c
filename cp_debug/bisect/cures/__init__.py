"""Cures and searches: the keep-FP32 / leave-out-of-INT8 search on its driver, the cure ladder, a deployed Q/DQ file's
cure in its tool's terms, a bug report's window.

The search strategies and their one driver (`search.py`: every search's steps are its `TraceStep`s, each search's
payload typed); the keep-FP32 search (`keep_fp32.py`, one experiment on a backend `experiment.py`); the cure ladder,
smallest first, each verified (`ladder.py`; INT8's rungs `int8_range_rung.py`, `int8_story_cure.py`); a deployed Q/DQ
file's cure in the producing tool's terms (`qdq_exclude.py`); what a bug report needs to grow a window
(`window_context.py`); the root cause's set search at the outputs, its members each run alone (`set_search.py`);
what the intervention found and how it is said (`intervened.py`, run by `findings/intervention.py`).

Search strategies. A search is a plain object with `next()` / `tell(bad)` (`search.py`: `KeepFp32Search`;
`window_search.py`: `RangeShrinkSearch`, `WindowGrowSearch`), tested without any model. One driver runs any of them
against a judge (experiment → bool or `Verdict(bad, figures)`): `run_search(strategy, judge, on_step)` returns a
typed `Trace` (per run: step, phase, experiment, verdict, the judge's figures, seconds; the result and status). It is
the one step record: keep-fp32, the INT8 exclusion search and fix keep the `TraceStep`s as they come, each with its
search's typed figures (`KeepFp32Figures`, `ExclusionFigures`, fix's `Checked`), and write their step JSON from them;
their progress lines say what is left (`Search.eta`).

strategy (pure)      driver: bisect/cures/search.run_search     judge (knows the backend)
KeepFp32Search    ──┐                                       ┌── keep-fp32: FP16 vs ORT FP32
RangeShrinkSearch ──┼── next() → judge(exp) → tell() ───────┼── sensitivity --search
WindowGrowSearch  ──┘   returns a Trace of TraceSteps       ├── fix: worst frames, then all
                                                            └── bug report: range / window

The judges: keep-fp32's in `bisect/cures/keep_fp32.py`, `sensitivity --search`'s in
`recipes/centerpoint/ptq/sensitivity.py`, fix's in `fix/search.CheapFirst`, the bug report's in
`bugreport/window.py`, `grow.py`.

A judge that flips INT8 quantizers does it through `quant.quantizers.only_quantized` / `without_quantizers`, context
managers that restore the state they found (`quantizer_state`). `bisect/cures/experiment.py` runs one keep-FP32
experiment on a backend. (A marking search for TensorRT — one tensor marked per run — was removed unused: TensorRT
cannot run where cp_debug is built, and `bisect` reports every probe of a whole-stage run.)
"""
