"""A built-in quantized candidate's restoration onto a node it quantizes (issue 115, item 1: "the root cause is what
brings the output back"). The built-in INT8 quantizes the inputs of its Conv / ConvTranspose / Gemm / MatMul
(`precision.int8.DEFAULT_OP_TYPES`; FP8, NVFP4, MXFP8 their GEMMs, `precision.fp8.COMPUTE_OPS`); a probe written by
any other node (a Transpose, an Unsqueeze, a bias Add, a Sigmoid) holds the error of the quantized node upstream of
it, and leaving that probe's own node out of the quantization leaves out nothing: its run is the candidate's own, and
run alone (every other node left out) it is FP32's. Such a probe is restored as the nearest node upstream that the
built-in quantizes, walking back through nodes with one data input (the others constants), under that node's probe —
so a Transpose ranked first and the Conv before it are one candidate, and the set search's pool holds layers whose
restoration does something (attacut's Thai word boundaries in INT8: Transposes, Unsqueezes and bias Adds ranked
among the first six, the set {`linear2`, `conv2`} that brings them back never reachable). None where no such node
is found within a few steps, or its output is no probe: nothing to restore. A node that reads a tensor the candidate
rounds (its calibrated amax known: ORT's Q/DQ rounds a Conv's output too) and changes values is its own restoration,
kept: left out, it reads that tensor float (MTCNN PNet's `prelu2`, conv2's output: the built-in and its twin file one
story)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.run_state import CandidateState, RunState

DEPTH = 8  # nodes walked back at most


def quantized_ops(precision: str) -> tuple[str, ...]:
    """The op types the built-in candidate of `precision` quantizes."""
    from cp_debug.precision.fp8 import COMPUTE_OPS
    from cp_debug.precision.int8 import DEFAULT_OP_TYPES

    return tuple(DEFAULT_OP_TYPES) if precision == "int8" else tuple(COMPUTE_OPS)


def _reads_rounded(node, rounded) -> bool:
    """`node` reads a tensor the candidate rounds (`rounded`: its calibrated amax by tensor) and changes its values:
    left out, it computes on the float tensor. An op the quantizer passes at its input's scale (a Transpose, a
    MaxPool: `qdq_removal.PASSED`) gives the same levels either way."""
    from cp_debug.bisect.cures.qdq_removal import PASSED

    return node.op_type not in PASSED and any(t in rounded for t in node.input)


def onto_quantized(run: "RunState", state: "CandidateState", r, tensor: str):
    """`r` (a `restore.Restoration`: a built-in candidate's nodes left out of its format; `tensor` its probe's) as it
    is where one of its nodes is quantized; else the nearest quantized node upstream of `tensor` under its own probe,
    or None (module docstring)."""
    ops = quantized_ops(state.spec.precision)
    st = run.stage_of(state.label, r.stage)
    model = st.onnx()
    nodes = {n.name: n for n in model.graph.node if n.name}
    if any(nodes[n].op_type in ops or _reads_rounded(nodes[n], state.int8_amax) for n in r.nodes if n in nodes):
        return r  # a node it quantizes, or one reading a tensor it rounds: left out, something reads float
    producer = {o: n for n in model.graph.node for o in n.output if o}
    consts = {i.name for i in model.graph.initializer} | {
        o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    node = producer.get(tensor)
    for _ in range(DEPTH):
        if node is None or node.op_type in ops:
            break
        data = [x for x in node.input if x and x not in consts]
        node = producer.get(data[0]) if len(data) == 1 else None
    if node is None or node.op_type not in ops or not node.name:
        return None
    pm = st.probe_map()
    held = {(name if p.kind == "output" else pm.tensors.get(name) if pm is not None else None): name
            for name, p in run.probes.items() if p.stage == r.stage}
    probe = held.get(node.output[0])
    return replace(r, probe=probe, nodes=(node.name,)) if probe is not None else None
