"""`cpdebug sweep --generate N`'s first flipped prompt, its flipped step bisected as `cpdebug bisect --generate N`
bisects it: by the same request (`bisect_run.run_request`, the command's and the library's path), the prompt given
as OUT/flipped_prompt.npz (what the user reruns with `cpdebug bisect … --inputs OUT/flipped_prompt.npz`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from cp_debug.bisect.subjects.prompt_sweep import PromptSweep


def bisect_flip(sweep: "PromptSweep", torch_model: bool, pairs: Sequence, seed: int, out: Path) -> "PromptSweep":
    """`sweep` with its first flipped prompt's step bisected (the same where none flips): `cpdebug bisect --onnx REF
    (or --torch FILE.py:FUNC) -b … --inputs OUT/flipped_prompt.npz --generate N` run by its own request — its
    outcome and verdict, the first divergent probe, the root cause and its hint, and the setting the decode found."""
    from cp_debug.api import bisect_request as groups
    from cp_debug.api.bisect_run import run_request
    from cp_debug.bisect.subjects.decoder_feed import IDS
    from cp_debug.files import write_atomic
    from cp_debug.report._format import verdict

    first = next((i for i, p in enumerate(sweep.prompts) if p.flip is not None), None)
    if first is None:
        return sweep
    ids = np.asarray([sweep.prompts[first].input_ids], np.int64)
    path = write_atomic(Path(out) / "flipped_prompt.npz", lambda f: np.savez(f, **{IDS: ids}), parents=True)
    subject = groups.model_group(torch_model=sweep.reference if torch_model else None,
                                 onnx_model=None if torch_model else Path(sweep.reference), seed=seed,
                                 generate=sweep.tokens)
    request = groups.bisect_request(list(pairs), groups.samples_group(subject, path), groups.options_group(seed=seed))
    report = run_request(request)
    cand = next((c for c in report.candidates if c.outcome == report.outcome), report.candidates[0])
    root = cand.root_cause
    return replace(sweep, bisect={
        "prompt": first, "step": sweep.prompts[first].flip["step"], "inputs": str(path),
        "outcome": report.outcome.value, "exit_code": int(report.outcome.exit_code),
        "verdict": verdict(cand, hint=False)[1], "first_divergent": cand.first_divergent,
        "root_cause": root.probe if root is not None else None, "hint": root.hint if root is not None else None,
        "setting": _setting(report)})


def _setting(report) -> str | None:
    """The decode's cure as the bisect said it (its warning `accuracy_level=1 on … alone gives the reference's tokens
    back …`), or None."""
    said = [w for w in getattr(report, "warnings", ()) if "alone gives the reference's tokens back" in str(w)]
    return str(said[0]).split(": ", 1)[-1] if said else None
