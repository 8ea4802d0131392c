"""The hint's advice in the candidate's own terms, and held to the outputs (issue 115: every "why" rests on a number
the report shows; advice is verified by the same judge as the run before it is given).

A user's Q/DQ file takes no `--exclude-int8`: its layer is left out of its quantization by the quantizer's
`nodes_to_exclude` (the node writing the probe's tensor, where it reads through a Q/DQ pair), or its Q/DQ pairs
removed (`file_exclusion`).

A probe's own INT8 reading advises leaving the layer out of INT8 (`hints._int8_parts`); a segment's FP16 finding
advises the keep set its segment verified (`segment_why.SegmentWhy`). Neither was judged at the outputs where it was
written. The intervention (`findings/intervention.py`) runs both there before the verdict is written: the root's own
restoration, and the segment's keep set (`catalog._verified_keep`, run in `settle`). `held_to_outputs` reads what it
found: advice the outputs confirm stands; advice tried there and not enough is said with its number, never offered
(MobileNetV2's depthwise channel ×1000 in INT8: the conv left out of INT8 leaves the outputs at 1.22× their budget,
worse than its 1.07×; a float16 cancellation `(x + 2000) − 2000`: keeping the Sub in FP32 cures its segment, the
outputs stay at 2.2× — the Add that makes the large term is needed too, the keep set the intervention verified).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.findings.intervention import Intervention
    from cp_debug.bisect.run_state import CandidateState, RunState

# `segment_why.SegmentWhy.text`'s verified advice: the keep set, the flag, the segment, its local figure
_SEGMENT_KEEP = re.compile(r"verified(?P<on>[^:;]*): keeping (?P<keep>[^;]+?) in FP32 \(--keep-fp32\) brings "
                           r"(?P<seg>this segment|the segment through [^;]+?) within precision \((?P<local>[^)]*)\)")


def file_exclusion(run: "RunState", state: "CandidateState", probe: str) -> str | None:
    """How `probe`'s layer is left out of a user's Q/DQ file's quantization, in the file's terms; None for a
    built-in candidate (its `--exclude-int8`)."""
    from cp_debug.bisect.cures.restore import EXCLUDE, restoration

    if state.spec.onnx_dir is None:
        return None
    try:
        r = restoration(run, state, probe)
    except Exception:  # noqa: BLE001 - the words stand without the node's name
        r = None
    if r is not None and r.how == EXCLUDE and r.in_file:
        return (f"leave it out of the file's quantization (re-quantize with `nodes_to_exclude={list(r.nodes)!r}`, "
                "or remove its Q/DQ pairs)")
    return ("leave it out of the file's quantization (its node in the quantizer's `nodes_to_exclude`, or its Q/DQ "
            "pairs removed)")


def held_to_outputs(hint: str | None, found: "Intervention | None", root: str | None) -> str | None:
    """`hint` with its unverified advice held to what the intervention `found` at the outputs (module docstring);
    `hint` as it is where nothing was run there."""
    if not hint or found is None or root is None:
        return hint
    return _segment_keep(_exclusion(hint, found, root), found, root)


def _exclusion(hint: str, found: "Intervention", root: str) -> str:
    """The probe's own INT8 advice: kept where the outputs confirm its restoration, else replaced by what its
    restoration did there (tried and not enough, with the number), or dropped where it was not tried."""
    from cp_debug.bisect.cures.restore import EXCLUDE
    from cp_debug.bisect.findings.hints import EXCLUDE_ADVICE

    advice = re.search(EXCLUDE_ADVICE, hint)
    if advice is None:
        return hint
    mine = [t for t in found.tried if len(t.restored) == 1 and t.restored[0].probe == root
            and t.restored[0].how == EXCLUDE and not (t.restored[0].alone or t.restored[0].source)]
    if any(t.after.back for t in mine):
        return hint  # verified at the outputs: the confirmation says so
    if not mine:
        said = "not offered: its exclusion was not run at the outputs"
    else:
        best = min(mine, key=lambda t: t.after.ratio)
        said = f"{best.restored[0].words()} tried at the outputs: {_figures(found, best)}" + (
            " — nearer, not the cure" if best.after.ratio < found.before.ratio else " — no better: not offered")
    return hint[:advice.start()] + said + hint[advice.end():]


def _segment_keep(hint: str, found: "Intervention", root: str) -> str:
    """A segment's verified keep set run at the outputs and not enough there: said with the outputs' number, its flag
    dropped (the cure offered is the one the outputs verified)."""
    m = _SEGMENT_KEEP.search(hint)
    if m is None:
        return hint
    keep = tuple(k.strip() for k in m["keep"].split(","))
    tried = [t for t in found.tried if len(t.restored) == 1 and t.restored[0].source
             and tuple(t.restored[0].nodes) == keep]
    if not tried or any(t.after.back for t in tried):
        return hint
    said = (f"keeping {m['keep']} in FP32 brings {m['seg']} within precision{m['on']} ({m['local']}), not the "
            f"outputs ({_figures(found, tried[-1])}): not the cure")
    return hint[:m.start()] + said + hint[m.end():]


def _figures(found: "Intervention", t) -> str:
    flips = f", {t.after.flips} decision(s) flipped" if t.after.flips else ""
    return f"worst output {found.before.ratio:.3g}× → {t.after.ratio:.3g}× its budget{flips}"
