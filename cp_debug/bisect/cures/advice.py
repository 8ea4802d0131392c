"""The hint's advice in the candidate's own terms, and held to the outputs (issue 115: every "why" rests on a number
the report shows; advice is verified by the same judge as the run before it is given).

A user's Q/DQ file takes no `--exclude-int8`: its layer is left out of its quantization by the quantizer's
`nodes_to_exclude` (the node writing the probe's tensor, where it reads through a Q/DQ pair), or its Q/DQ pairs
removed (`file_exclusion`).

A segment's FP16 finding advises the keep set its segment verified (`segment_why.SegmentWhy`): that keep set is run
at the outputs (`restore.keep_at_outputs`, where it could be the smaller cure) before its words are made, and the
finding renders what the outputs said (`keep_held`, an `AtOutputs`): verified there, or said with the outputs'
number and not offered (a float16 cancellation `(x + 2000) − 2000`: keeping the Sub in FP32 cures its segment, the
outputs stay at 2.2× — the Add that makes the large term is needed too, the keep set the intervention verified). The
outputs' figures say which check fails where the RMS ratio alone reads as back (`restore.OutputError.figures`).

A probe's own INT8 reading advises leaving the layer out of INT8 (`hints._int8_parts`). `exclusion` decides that
advice from what the intervention found once it settled at the root (`intervention.settle` may restore it there),
before the hint's words are written: a typed `hints.Exclusion` the hint renders, no reading of its words. Advice the
outputs confirm stands; advice tried there and not enough is said with its number, never offered (MobileNetV2's
depthwise channel ×1000 in INT8: the conv left out of INT8 leaves the outputs at 1.22× their budget, worse than its
1.07×); advice not run there is not offered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cp_debug.bisect.cures.restore import AtOutputs

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.cures.restore import OutputError
    from cp_debug.bisect.findings.hints import Exclusion
    from cp_debug.bisect.cures.intervened import Intervention
    from cp_debug.bisect.run_state import CandidateState, RunState


def file_exclusion(run: "RunState", state: "CandidateState", probe: str) -> str | None:
    """How `probe`'s layer is left out of a user's Q/DQ file's quantization, in the file's terms; None for a
    built-in candidate (its `--exclude-int8`). Not guarded: what a valid file makes `restoration` meet (a weight
    stored quantized with no float weight of the reference's: `NoFloatWeight`) it answers itself, and the
    intervention (`intervention.confirm`) calls it so for the ranked probes before the words are made."""
    from cp_debug.bisect.cures.restore import EXCLUDE, restoration

    if state.spec.onnx_dir is None:
        return None
    r = restoration(run, state, probe)
    if r is not None and r.how == EXCLUDE and r.in_file:
        return (f"leave it out of the file's quantization (re-quantize with `nodes_to_exclude={list(r.nodes)!r}`, "
                "or remove its Q/DQ pairs)")
    return ("leave it out of the file's quantization (its node in the quantizer's `nodes_to_exclude`, or its Q/DQ "
            "pairs removed)")


def keep_held(state: "CandidateState", keep: tuple[str, ...], err: "OutputError | None") -> AtOutputs | None:
    """A segment's keep set `keep` as the outputs judged it: back where any run of it brought them back, else its
    last run's figures; None where it was not run there (`err`: this run of it, if any)."""
    found = state.intervention
    if found is None:
        return None
    runs = [t.after for t in found.tried if len(t.restored) == 1 and t.restored[0].source
            and tuple(t.restored[0].nodes) == tuple(keep)] + ([err] if err is not None else [])
    if not runs:
        return None
    return AtOutputs(found.before, next((a for a in runs if a.back), runs[-1]))


def exclusion(found: "Intervention | None", root: str | None) -> "Exclusion | None":
    """The probe's own INT8 advice for `root` as the intervention `found` judged it at the outputs, decided before
    the hint's words are made (module docstring): verified where its restoration brought them back, else the best
    run's figures, or not run there; None where nothing was run at the outputs (the advice as written)."""
    from cp_debug.bisect.cures.restore import EXCLUDE
    from cp_debug.bisect.findings.hints import Exclusion

    if found is None or root is None:
        return None
    mine = [t for t in found.tried if len(t.restored) == 1 and t.restored[0].probe == root
            and t.restored[0].how == EXCLUDE and not (t.restored[0].alone or t.restored[0].source)]
    cure = next((t for t in mine if t.after.back), None)
    if cure is not None:  # verified at the outputs: the confirmation says so
        return Exclusion(True, tuple(cure.restored[0].nodes), cure.restored[0].words(),
                         AtOutputs(found.before, cure.after).figures())
    if not mine:
        return Exclusion(False)
    best = min(mine, key=lambda t: t.after.ratio)
    return Exclusion(False, tuple(best.restored[0].nodes), best.restored[0].words(),
                     AtOutputs(found.before, best.after).figures(), best.after.ratio < found.before.ratio)
