"""Why the root cause's segment loses its values in NVFP4 / MXFP8 (emulated), and the format ladder tried on it: the
block formats' side of `segment_fp8.py` (issue 86, items 3 and 5).

The segment is quantized as the candidate quantizes it (`precision/block_quant.py`, calibrated on the reference's
boundary values as local errors are). The finding is a block-scale underflow there: a weight or an input of the
segment's GEMMs whose NVFP4 block scales underflow E4M3 for a share of its nonzero blocks (the block's max below
about 2.2e-6 of the tensor's: the whole block flushes to zero). Then the ladder, one rung at a time on the layers
the finding names (else every GEMM of the segment), smallest change first, each verified by the run's own judge:
NVFP4 → FP8 (those layers quantized as `ort-*-fp8` quantizes them, the rest NVFP4) → left out of the format (float32,
`--exclude-int8`); MXFP8 → left out. FP16 for one layer of a quantized graph is no rung here: ONNX Runtime runs these
graphs in float32 arithmetic, so a float16 layer inside one would not show what a deployment does.
"""

from __future__ import annotations

from dataclasses import dataclass

from cp_debug.backends.spec import Capability
from cp_debug.bisect.run_state import CandidateState, RunState
from cp_debug.bisect.cures.ladder import climb, ladder_text
from cp_debug.bisect.cures.ladder import named as _named
from cp_debug.bisect.findings.segment_why import root_segment, run_segment
from cp_debug.compare.diff import TensorDiff

BLOCK_FORMATS = ("nvfp4", "mxfp8")


@dataclass(frozen=True)
class BlockWhy:
    fmt: str
    flushed: tuple[tuple[str, float], ...]  # (tensor, share of its nonzero blocks flushed), worst first
    layers: str  # the layers the ladder changed, as people read them
    rung: str  # the change that cured it (or the last tried)
    exclude: tuple[str, ...]  # nodes left out of the format by that change (the last rung only)
    verified: bool
    before: float
    after: float
    budget: float | None
    tried: int

    def text(self) -> str:
        name = self.fmt.upper()
        if self.flushed:
            what = ", ".join(f"{share:.0%} of {t!r}'s nonzero blocks" for t, share in self.flushed[:2])
            why = (f"{name} block-scale underflow at {self.layers}: {what} flush to zero (a block's max below "
                   "about 2.2e-6 of its tensor's: its E4M3 block scale underflows)")
        elif self.fmt == "nvfp4":
            why = f"{name} rounding of {self.layers} (no block of its segment flushes)"
        else:  # MXFP8's power-of-two block scales: no underflow reading here
            why = f"{name} quantisation of {self.layers}"
        return ladder_text(why, f"{self.layers} {self.rung}", self.fmt, self.before, self.after, self.budget,
                           self.exclude, self.verified, self.tried)


def explain_block_segment(run: RunState, state: CandidateState, i: int, probe: str) -> BlockWhy | None:
    """The block-format why of `probe`'s segment for an ONNX Runtime NVFP4 / MXFP8 candidate, with the ladder
    tried on the segment; None where it does not apply or the segment has no GEMM of the format."""
    from cp_debug.bisect.stages.stand_in import plain_spec
    from cp_debug.precision.block_quant import quantize_blocks
    from cp_debug.precision.fp8 import COMPUTE_OPS, quantize_fp8

    fmt = state.spec.precision
    if fmt not in BLOCK_FORMATS or not state.spec.can(Capability.ORT_SESSIONS):
        return None
    rs = root_segment(run, state, i, probe)
    if rs is None:
        return None
    seg, feed, tensor = rs.model, rs.feed, rs.tensor
    nodes = [n for n in seg.graph.node if n.op_type in COMPUTE_OPS]
    plain = plain_spec(state.spec.device)  # the emulated graph runs as the lane runs it
    base = quantize_blocks(seg, fmt, [feed])
    quantized = {n.name for n in nodes if n.input and n.input[0] in base.tensor_map
                 and base.tensor_map[n.input[0]] != n.input[0]}
    if not quantized:
        return None
    flushed = tuple(sorted(base.weights_flushed.items(), key=lambda kv: -kv[1]))
    named = [n for n in nodes if n.name in quantized and (not flushed or set(n.input[:2]) & dict(flushed).keys())]
    names = tuple(n.name for n in named or [n for n in nodes if n.name in quantized])
    layers = ", ".join(_named(n, rs.named) for n in nodes if n.name in names)

    def run_as(fp8: tuple[str, ...] = (), out: tuple[str, ...] = ()):
        model = quantize_blocks(seg, fmt, [feed], exclude_nodes=[*fp8, *out]).model if (fp8 or out) else base.model
        if fp8:
            others = [n.name for n in nodes if n.name not in fp8]
            model = quantize_fp8(model, [feed], exclude_nodes=others).model
        return run_segment(run, str(plain), model, feed, [tensor], spec=plain, facts=False).values[tensor]

    truth, judge = run.store.get(probe), run.tolerance(state, probe)
    before = TensorDiff.from_arrays(probe, truth, run_as(), judge)
    ladder = ([("in FP8 instead of NVFP4", {"fp8": names}, ())] if fmt == "nvfp4" else []) + \
        [(f"left out of {fmt.upper()} (float32)", {"out": names}, names)]
    k, (rung, _, exclude), after, ok, budget = climb(run, state, probe, ladder, lambda step: run_as(**step[1]))
    return BlockWhy(fmt, flushed, layers, rung, exclude, ok, before.rel_rmse, after.rel_rmse, budget, k)
