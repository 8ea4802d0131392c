"""The diagnosis of a root cause: each fault class a module that reads the numbers of its segment (range overflow,
underflow and flush, decision and index flips, eps, export semantics, Q/DQ and block scales, masks and guards,
runtime faults, graph differences) and says what it found with the number it rests on.

One contract (`contract.py`): an examiner `applies(candidate)` by what its runner can do (`spec.can`, never a
framework's name) and `examine(segment) -> Finding | None`; one ordered list of them (`catalog.py`: where, why,
run; the examiners by role in `examiners/`), over which the verdict (`bisect/verdict.py`) is a reducer — the same
findings, the same story, at every level.

The verdict's reasons: the op inside a root cause's segment that overflows, first makes NaN/Inf, collapses to zero or
reduces too long, with its module, its role and a sum's length and largest term (`op_findings.py`, run by
`segment_why.py`); the module whose own code holds it: the root probe moved there where its output is a probe
(`owner_cause.py`), else named beside it (`RootCause.module`); a decision in the root cause's segment named as the
decision, the outcome judged at the causes beside it (`decision_cause.py`); the reasons
beside it: an eps lost (`eps_why.py`), an export that computes otherwise — a Resize's rounding, a truncating Div, an
op removed (`export_why.py`) —, a small term judged by its share of the sum it is added to (`contribution.py`). A
TopK / ArgMax whose reference margin is within the candidate format's rounding step, named as the decision that
flips, not as an upstream layer's rounding (`flip_why.py`); a decision the candidate takes otherwise — a TopK /
ArgMax's members, a threshold's booleans, an NMS's kept boxes — measured on the stage run with the decisions exposed
and run again on the reference's choice, the outputs after a TopK compared as sets, rows matched by the member each
holds (`choice_flip.py`, its runs `choice_runs.py`, its members `choice_members.py`); in a candidate that
is not measured so (INT8, FP8, a user's file), the first decision upstream taken otherwise, with its margin, its
place, its rows and the Q/DQ step of the values it reads (`quantized/choice.py`); a float made an index (a Cast
to an integer, Floor / Ceil / Round, a nearest GridSample's coordinate) whose reference value the candidate's format
rounds across the boundary, named as the index flip with the value, its rounding and the step (`index_why.py`).

The quantized formats' whys: INT8 (`segment_int8.py`, one story at every level `int8_story.py`, ONNX Runtime's
ClipQuantFusion `clip_fusion.py`), FP8 (`segment_fp8.py`), NVFP4 / MXFP8 (`segment_blocks.py`); a user's own Q/DQ
file read against its own scales at the root cause (`qdq_file_why.py`); a runtime that computes the user's file wrong
(`runtime_fault.py`); a deployed graph's own nodes where the root cause's segment holds one (`graph_blame.py`:
`RootCause.nodes`); the hint each rule writes from the numbers (`hints.py`). The cures they call for:
`bisect/cures/`.

Issue 115: the root cause the ranking proposes is confirmed at the outputs by restoring it (`intervention.py`, the
runs `cures/restore.py`); the decisions the outputs carry — `--metric`, else Sigmoid / Softmax at 0.5 / argmax —
(`decisions.py`); the mechanism read from the data: a constant or statistic beyond float16's range
(`constant_range.py`), a flush before a Log / Div / Sqrt / Pow at its producer (`flush_why.py`), an overflow its
consumer saturates (`no_error.saturates`), each excuse of "this difference is no error" under one contract
(`no_error.py`).
"""
