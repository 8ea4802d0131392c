"""The cure a deployed Q/DQ file's root cause calls for, in the producing tool's own terms, verified where it can be
(issue 107, item 6): leave the node that reads through the failing Q/DQ pair out of the quantizer.

Who wrote the file is read from the file (`qdq_producer`). Either tool takes `nodes_to_exclude`: the node names of the
FP32 file it quantized, which the deployed file keeps (`/block2/conv2/Conv` in both).

The cure is tried here as leaving the node out does it: the same file with the Q/DQ pairs feeding that node removed
(an activation read from the QuantizeLinear's input, through the Relu the quantizer folded into the pair where it did;
a weight stored quantized read as the reference's float weight of the same node where that is the weight the file
quantized, else the cure is said untried: a dequantized weight keeps the rounding the cure removes), every other
node's scales as they are; run on the run's input by the candidate's runner and judged as the run judges its outputs
(`compare/cure_judge.passes`). "verified" only where every output passes; else what it gave. Where the nodes reading
the pair are not enough, the quantized node computing the values that set its range (`quantized_writer`) is left out
with them, and the smaller set's figure said too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from cp_debug.bisect.cures.qdq_producer import MODELOPT, ONNXRUNTIME, producer
from cp_debug.bisect.cures.qdq_removal import NoFloatWeight, reference_values, without_qdq  # noqa: F401
from cp_debug.bisect.run_state import CandidateState, RunState

CALLS = {MODELOPT: "ModelOpt: `modelopt.onnx.quantization.quantize(..., nodes_to_exclude={nodes!r})`",
         ONNXRUNTIME: "ONNX Runtime: `quantize_static(..., nodes_to_exclude={nodes!r})` (optimum's ORTQuantizer: "
                      "`QuantizationConfig(nodes_to_exclude={nodes!r})`)"}

# the rule a file that does not name its tool is tried by (`qdq_removal.output_paired`)
ASSUMED = ("tried by ONNX Runtime's rule, a Conv / Gemm / MatMul kept quantized keeps the pair on its output "
           "(ModelOpt's keeps none)")


@dataclass(frozen=True)
class ExcludeCure:
    """Nodes to leave out of the file's quantizer, the tool that wrote it (None: not told) and, where tried, the
    outcome: `passes`, and the worst graph output's rel. RMSE before and after with its ratio to the budget."""

    nodes: tuple[str, ...]
    producer: str | None
    passes: bool | None = None  # None: not tried
    output: str | None = None
    before: float | None = None
    after: float | None = None
    ratio: float | None = None  # after's error / the precision's budget
    precision: str = "int8"
    failed: tuple["ExcludeCure", ...] = ()  # smaller sets tried before, each not enough alone
    untried: str | None = None  # why it was not tried
    fp32: bool = False  # the cure is the file's FP16 parts in FP32 (ModelOpt's high_precision_dtype), not `nodes`
    ops: tuple[str, ...] = ()  # fp32: the op types of `nodes` (ModelOpt's op_types_to_exclude_fp16)
    worse: bool = False  # the worst output's error larger than the file's own (issue 115: never offered)
    flipped: int = 0  # the decisions its outputs still flip (`findings/decisions.flips`)
    decided: str = ""  # not within budget, yet the decision the file moved back: its words (`decision_layer.decision`)
    moved: int = 0  # the decisions the file itself flips: where it moved some and the cure none, said so
    own: int = 0  # pairs that shared a left-out node's scale past an op passing it on, calibrated on their own

    def text(self) -> str:
        nodes = list(self.nodes)
        if self.fp32 and self.producer != MODELOPT:
            said = "re-quantize keeping the float parts in FP32 (the quantizer's FP16 conversion off)"
            tried = "the file with its FP16 widened to FP32, nothing else changed"
        elif self.fp32:
            said = ("re-quantize with `high_precision_dtype='fp32'` (ModelOpt: `modelopt.onnx.quantization.quantize("
                    "..., high_precision_dtype='fp32')`"
                    + (f", or `op_types_to_exclude_fp16={sorted(set(self.ops))!r}`" if self.ops else "") + ")")
            tried = "the file with its FP16 widened to FP32, nothing else changed"
        else:
            tools = [self.producer] if self.producer else [MODELOPT, ONNXRUNTIME]
            calls = "; ".join(CALLS[t].format(nodes=nodes) for t in tools)
            said = (f"re-quantize with `nodes_to_exclude={nodes!r}` ({calls}"
                    + ("" if self.producer else f"; the file does not say which tool wrote it: {ASSUMED}") + ")")
            tried = f"the file with the Q/DQ feeding {', '.join(nodes)} removed, every other scale as it is" + (
                f" but {self.own} pair(s) that shared a left-out node's scale past an op passing it on, read by a "
                "quantized node: calibrated on their own values, as the quantizer does" if self.own else "")
        if self.passes is None:
            return said + ", not tried here" + (f": {self.untried}" if self.untried else "")
        before = "".join(f"; {list(f.nodes)!r} alone was not enough ({f.figure(back=False)})" for f in self.failed)
        if self.worse:
            return (f"{said.split(' (')[0]}: tried, not offered — {tried}, leaves the outputs worse than the file's "
                    f"own: {self.figure()}{before}")
        if self.passes:
            return (f"{said}: verified — {tried}, holds every output within {self.precision} ({self.figure()})"
                    + before)
        if self.decided:
            from cp_debug.bisect.cures.decision_layer import said as decision_said

            return (f"{said}: tried — brings {decision_said(self.decided)} back, its outputs still beyond "
                    f"{self.precision}'s "
                    f"budget — {tried}: {self.figure()}{before}")
        return f"{said}: tried and not enough — {tried}: {self.figure()}{before}"

    def figure(self, back: bool = True) -> str:
        """The worst output's figures and the decisions still flipped; with `back`, the decisions the file moves all
        back where so (said of the cure offered; a smaller set is said by what it still flips)."""
        if self.after is None:
            return "no output compared"
        was = f"{self.before:.3g} → " if self.before is not None else ""
        flipped = (f", {self.flipped} decision(s) still flipped" if self.flipped
                   else f", every decision back ({self.moved} moved by the file)" if self.moved and back else "")
        return f"{self.output!r} rel. RMSE {was}{self.after:.3g}, {self.ratio:.2g}× {self.precision}'s budget{flipped}"


def exclusion_cure(run: RunState, state: CandidateState, i: int, model, ladder: list[list[str]]) -> ExcludeCure | None:
    """The first set of `ladder` (node sets of the deployed stage i's `model`, smallest first) that, left out of its
    quantizer, holds every output (module docstring), else the last one tried; untried where the run's reference
    outputs of the stage are not known; None where no node is named."""
    cure, failed = None, ()
    for nodes in ladder:
        got = _tried(run, state, i, model, nodes)
        if got is None:
            continue
        if cure is not None and cure.passes is False:
            failed += (cure,)
        cure = got
        if cure.passes is not False:
            break
    return replace(cure, failed=failed) if cure is not None else None


def fp32_cure(run: RunState, state: CandidateState, i: int, model, nodes: list) -> ExcludeCure:
    """The file's FP16 parts in FP32 (ModelOpt's `high_precision_dtype='fp32'`, where `nodes` overflow FP16), tried
    on the file with its float16 widened (`half_storage.widen_half`: exact, nothing else changed)."""
    cure = _tried(run, state, i, model, [n.name for n in nodes], fp32=True)
    return replace(cure, ops=tuple(n.op_type for n in nodes))


def _tried(run: RunState, state: CandidateState, i: int, model, nodes: list[str],
           fp32: bool = False) -> ExcludeCure | None:
    nodes = [n for n in dict.fromkeys(nodes) if n]
    if not nodes:
        return None
    cure = ExcludeCure(tuple(nodes), producer(model), precision=state.judged_at, fp32=fp32)
    ref_out = run.ref_outputs.get(i)
    if not ref_out:
        return cure
    from cp_debug.bisect.stages.stage_runner import make_stage_runner
    from cp_debug.compare import cure_judge
    from cp_debug.compare.diff import TensorDiff
    from cp_debug.precision.half_storage import widen_half

    try:
        asked: list[str] = []  # the pairs given a scale of their own (`qdq_removal._own_scales`)
        edited = widen_half(model) if fp32 else without_qdq(
            model, nodes, run.subject.stages[i].onnx(),
            values=lambda names: reference_values(run, state, i, names, asked))
    except NoFloatWeight as err:
        return replace(cure, untried=str(err))
    feed = state.feeds.get(i) or run.ref_feeds[i]
    st = run.stage_of(state.label, i)
    with make_stage_runner(run, state.spec, st, [], onnx_model=edited, extra_tensors=[]) as r:
        out = r.infer(feed)
    worst = None
    passes, held = True, _held(run, state, i)
    for name, ref in ref_out.items():
        if name not in out:
            continue
        d = TensorDiff.from_arrays(name, np.asarray(ref), np.asarray(out[name]), run.tolerance(state, name))
        j = run.judge(state, name, d)  # the run's judge (its calibrated ranges, its noise floor), as the verdict's
        passes &= cure_judge.passes(d, state.judged_at, j, name in held)
        if worst is None or not j.noise_ratio <= worst[1].noise_ratio:
            worst = (d, j)
    if worst is None:
        return cure
    d, j = worst
    had = state.results.get(d.name)
    before = had.diff.rel_rmse if had is not None and had.diff is not None else None
    # issue 115: judged against the file's own error too, and at the decisions its outputs carry
    from cp_debug.bisect.cures.at_outputs import WORSE
    from cp_debug.bisect.cures.decision_layer import decision
    from cp_debug.bisect.findings.decisions import flips

    worse = before is not None and d.rel_rmse > WORSE * before
    flipped = flips(run, i, ref_out, out)
    was = state.as_deployed.get(i)  # a cure that gives the decisions back and not the outputs' budget: both said
    moved = flips(run, i, ref_out, was) if was and not flipped else 0  # (BlazeFace's faces: back at 1.7× it)
    passes = passes and not worse and not flipped  # one flipped: not enough
    # the decision brought back (a declared one, else the outputs read at 0.5 / argmax)
    decided = decision(run, i) if not (passes or worse or flipped) and moved else ""
    return replace(cure, passes=passes, output=d.name, before=before, after=d.rel_rmse, ratio=j.noise_ratio,
                   worse=worse, flipped=flipped, own=len(asked), decided=decided, moved=moved)


def _held(run: RunState, state: CandidateState, i: int) -> frozenset:
    """The outputs the cure is held to by their budget alone (`cure_judge.passes`): in model mode, those within it as
    the file runs, nothing left out (`restore.output_error`'s, as the intervention holds them) — an element-wise
    miss the file had before is not the cure's to remove (RivaGAN's decoder: `Mul_16` left out brings its bits back
    at 0.27× the budget, one score of 32 past the element-wise tolerance)."""
    from cp_debug.bisect.cures.restore import output_error

    was = state.as_deployed.get(i)
    if run.opts.tolerance_mode != "model" or was is None:
        return frozenset()
    return output_error(run, state, i, was).held


def quantized_writer(model, tensor: str, depth: int = 8):
    """The nearest node upstream of `tensor` that reads through a DequantizeLinear (a node the tool quantized: the
    one computing the values a Q/DQ pair's range is set by), walking back through Q/DQ pairs and one-input ops
    (Relu, Clip, pooling, reshapes); None where the walk meets anything else."""
    producer = {o: n for n in model.graph.node for o in n.output}
    for _ in range(depth):
        node = producer.get(tensor)
        if node is None:
            return None
        if node.op_type in ("DequantizeLinear", "QuantizeLinear"):
            tensor = node.input[0]
            continue
        if any(x in producer and producer[x].op_type == "DequantizeLinear" for x in node.input):
            return node
        data = [x for x in node.input if x in producer or x in {i.name for i in model.graph.input}]
        if len(data) != 1:
            return None
        tensor = data[0]
    return None


def bad_scale_sets(model, source: str) -> list[list[str]]:
    """Where the file's pair on `source` has a scale that is no number (inf, NaN, 0): its writer with its readers,
    then every pair of the file whose scale is so left out at once by its readers — each pair's readers left out
    remove it, so its writer only where nothing reads it (one fault in every layer: a masked attention's -inf fill
    calibrated into each layer's scores, rxnfp's BERT: the 12 Adds and Softmaxes, not the fill's Wheres)."""
    from cp_debug.precision.int8 import bad_scale_pairs

    pairs = bad_scale_pairs(model)

    def around(p) -> list[str]:
        return [p.writer] * (p.writer is not None) + list(p.readers)

    every = list(dict.fromkeys(x for p in pairs for x in (list(p.readers) or around(p))))
    return [around(p) for p in pairs if p.source == source] + [every] * (len(pairs) > 1)


def dominant_channels(value: np.ndarray, axis: int = 1, factor: float = 10.0) -> list[int]:
    """The channels (along `axis`) whose |x| max is `factor`× past the median channel's: the outliers that set a
    per-tensor range (empty where none stands out, or `value` has no such axis)."""
    v = np.abs(np.asarray(value, np.float64))
    if v.ndim < 2 or v.shape[axis] < 4:
        return []
    amax = np.moveaxis(v, axis, 0).reshape(v.shape[axis], -1).max(axis=1)
    med = float(np.median(amax))
    return [int(c) for c in np.flatnonzero(amax > factor * med)] if med > 0 else []
