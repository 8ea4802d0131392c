"""A centering mean — the mean a LayerNorm subtracts from a residual whose mean is near zero — judged on the scale of
the tensor it is subtracted from.

Its error relative to itself is the rounding of its inputs divided by how much smaller it is than they are: a
healthy INT8 BERT's decomposed LayerNorm mean (`ReduceMean` of `x`, ~180× smaller than `x`) is off by 165 % of
itself while the `x - mean` after it is within its budget (ModelOpt's INT8 file with FP16 high precision, as optimum
exports it). Only a mean taken back from what it averages (`x - mean(x)`: `centering`) is read so: there its error
lands on `x`'s scale, where a cancellation used as it is ((x + 1024) - 1024 in FP16) stays a fault of its own. The
gain comes from the reference's own magnitudes (rms of the input ÷ rms of the output), not from the candidate's
errors, so a decision or an index flip — whose reference values do not shrink — is never excused by it
(`noise.carried` bounds its gain by `DOMINANCE` for that reason)."""

from __future__ import annotations

from cp_debug.compare.diff import TensorDiff
from cp_debug.compare.noise import Judgement, Outcome, ref_rms

GAIN = 16.0  # rms(input) ÷ rms(output) from which a tensor is a cancellation (op_findings' `_CANCEL_GAIN`)


def centering(model, tensor: str) -> str | None:
    """The tensor `tensor` is the mean of (a ReduceMean's input), where a Sub of that same input takes it back
    (`x - mean(x)`), else None."""
    node = next((n for n in model.graph.node if tensor in n.output), None)
    if node is None or node.op_type != "ReduceMean" or not node.input:
        return None
    x = node.input[0]
    takes_back = any(n.op_type == "Sub" and list(n.input[:2]) == [x, tensor] for n in model.graph.node)
    return x if takes_back else None


def cancelled(j: Judgement, d: TensorDiff, source: str, source_diff: TensorDiff, source_own: Judgement,
              precision: str) -> Judgement:
    """`j` (the judgement of `d`, a cancelling op's output, by its own budget), or the judgement by the budget of
    `source` (the tensor it cancels, within its own budget: `source_own`) carried over to `d`'s scale."""
    if not j.beyond or source_own.beyond or d.status not in ("ok", "diverged"):  # NaN/Inf, shapes: its own
        return j
    out_rms, in_rms = ref_rms(d), ref_rms(source_diff)
    if not (out_rms and in_rms) or in_rms < GAIN * out_rms:
        return j
    gain = in_rms / out_rms
    exp = source_own.expected_rel_rmse * gain
    ratio = d.rel_rmse / exp
    outcome = Outcome.WITHIN_PRECISION if ratio <= 1 else Outcome.DEGRADED
    return Judgement(outcome, exp, ratio, f"rel. RMS error {ratio:.2g}× {precision}'s budget on the scale of {source}, "
                     f"which it cancels ({gain:.3g}× smaller than it; its own {j.noise_ratio:.3g}×)", source)
