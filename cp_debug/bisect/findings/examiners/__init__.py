"""The examiners of the one ordered list (`findings/catalog.py`), by role (`contract.Role`): `where.py` (a finding
that places the cause: a decision, a near tie, a range, a Q/DQ flush), `why.py` (the reason at the root cause's
segment: a constant, a flush, the segment's op, a file's shared scale or scales, an eps, an export, the calibration's
fit), `run.py` (the candidate's run as a whole: the deployed graph, the runtime's defaults, the intervention). Each
examiner asks its fault class's module (`findings/*.py`, `findings/quantized/`, `cures/`); the list's order is the
catalog's alone. Here: the formats the examiners test, and the keep set a finding tried at the outputs."""

from __future__ import annotations

HALF = ("fp16", "bf16")
QUANTIZED = ("int8", "fp8")
BLOCKS = ("nvfp4", "mxfp8")


def kept_at_outputs(found) -> tuple:
    """The keep set `found` tried at the outputs, (Restoration, OutputError), as `Finding.restores` carries it."""
    return (found.at_outputs,) if getattr(found, "at_outputs", None) is not None else ()
