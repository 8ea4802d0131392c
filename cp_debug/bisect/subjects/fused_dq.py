"""4-bit DequantizeLinear weights that ONNX Runtime runs as MatMulNBits at accuracy_level 4 (issue 116): the runtime
setting behind a flipped token of a QDQ file, and the MatMul whose fusion alone flips it.

`MatMulNBitsQuantizer(quant_format=QDQ)` writes each weight as a blockwise DequantizeLinear of an INT4 / UINT4
initializer feeding a plain MatMul: no activation is quantized in the file. ONNX Runtime's CPU graph optimizer
(level EXTENDED and above, the default) fuses each such pair into a MatMulNBits whose `accuracy_level` is the
session's `session.qdq_matmulnbits_accuracy_level` — 4 by default: INT8 activations per block, which a massive
channel rounds to zero as the builder's level-4 files do (the corpus's Qwen3: greedy step 7, 23 → 225; BASIC or the
entry at 1 decode PyTorch's tokens). The file says none of it.

`dq_cures(model, dec, ids, ref)`: the whole file decoded with the entry at 1 first (one decode); where that gives the
reference's tokens back, the MatMuls are halved (a half's weights folded to their float values, which ONNX Runtime
then leaves unfused: the same weights in float32, as level 1 computes them) down to the MatMuls whose fold alone
gives the tokens back, each verified alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import onnx

    from cp_debug.bisect.subjects.decoder_feed import DecoderInputs
    from cp_debug.bisect.subjects.greedy import Decode

LEVEL_KEY = "session.qdq_matmulnbits_accuracy_level"


def fused_matmuls(model: "onnx.ModelProto") -> tuple[str, ...]:
    """The MatMuls whose weight (input B) is a 4-bit DequantizeLinear of an initializer: those ONNX Runtime fuses."""
    from cp_debug.precision.nbits import dq_weight_nodes

    dq_out = {n.output[0] for n in dq_weight_nodes(model)}
    return tuple(n.name or n.output[0] for n in model.graph.node
                 if n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in dq_out)


def with_float_weights(model: "onnx.ModelProto", matmuls: Sequence[str]) -> "onnx.ModelProto":
    """A copy of `model` whose named MatMuls read their weight as a float32 initializer (its DequantizeLinear's
    values, with the file's own numbers: `nbits.dequantize_dq`), which ONNX Runtime does not fuse."""
    import onnx
    from onnx import numpy_helper

    from cp_debug.precision.nbits import dequantize_dq

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name: i for i in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    names = set(matmuls)
    for node in m.graph.node:
        if node.op_type != "MatMul" or (node.name or node.output[0]) not in names:
            continue
        dq = producer.get(node.input[1])
        w = dequantize_dq(dq, inits) if dq is not None else None
        if w is None:
            continue
        name = node.input[1] + "::float"
        m.graph.initializer.append(numpy_helper.from_array(w.astype("float32"), name))
        node.input[1] = name
    read = {x for n in m.graph.node for x in n.input} | {o.name for o in m.graph.output}
    kept = [n for n in m.graph.node if n.op_type != "DequantizeLinear" or n.output[0] in read]
    del m.graph.node[:]
    m.graph.node.extend(kept)
    return m


@dataclass(frozen=True)
class FusedCure:
    """The fused MatMuls, those whose float weight alone gives the reference's tokens back, and whether the session
    entry at 1 does for the whole file."""

    nodes: tuple[str, ...]
    curing: tuple[str, ...] = ()
    all_at_level1: bool = False

    @property
    def whole_file(self) -> bool:
        """The session entry at 1 gives the tokens back for the whole file (`generation.DecodeCure`)."""
        return self.all_at_level1

    def line(self) -> str:
        from cp_debug.bisect.subjects.greedy import _builder_name

        fused = (f"ONNX Runtime fuses the file's {len(self.nodes)} 4-bit DequantizeLinear → MatMul into MatMulNBits "
                 f"at accuracy_level 4 (INT8 activations; the session's `{LEVEL_KEY}`, 4 by default on the CPU)")
        if self.curing:
            return (f"{fused}: {', '.join(self.curing)} alone unfused (its weight in float32) gives the reference's "
                    f"tokens back; in ONNX Runtime's terms `SessionOptions.add_session_config_entry('{LEVEL_KEY}', "
                    f"'1')` (or graph_optimization_level ORT_ENABLE_BASIC), or the quantizer's nodes_to_exclude="
                    f"{[_builder_name(n) for n in self.curing]!r}")
        if self.all_at_level1:
            return f"{fused}: no single MatMul; `{LEVEL_KEY}` at 1 gives the tokens back"
        return f"{fused}: `{LEVEL_KEY}` at 1 does not give the tokens back: not the INT8 activations"


def dq_cures(model: "onnx.ModelProto", dec: "DecoderInputs", ids: "np.ndarray", ref: "Decode") -> FusedCure | None:
    """The fused MatMuls whose float weight alone gives `ref`'s tokens back (see the module); None for a file
    without any."""
    from cp_debug.bisect.subjects.greedy import greedy, halved

    nodes = fused_matmuls(model)
    if not nodes:
        return None
    n = len(ref.tokens)
    if greedy(model, dec, ids, n, ref.tokens, config={LEVEL_KEY: "1"}).tokens != ref.tokens:
        return FusedCure(nodes)

    def cures(group: Sequence[str]) -> bool:
        return greedy(with_float_weights(model, group), dec, ids, n, ref.tokens).tokens == ref.tokens

    return FusedCure(nodes, halved(nodes, cures) if cures(nodes) else (), True)
