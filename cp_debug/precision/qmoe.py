"""A QMoE's experts read as ONNX Runtime holds them (com.microsoft `QMoE`, issue 116 s14, s20): the packed integer
weights of fc1 / fc2 / fc3, their scales and zero points, with the node's own `expert_weight_bits` and `block_size`.

Each weight is packed [E, N, K·bits/8] (4 bits: the low nibble first); its scales are [E, N, K / block_size] (a
block each, `block_size` > 0) or [E, N] / [E, N, 1] (a row each: `block_size` 0, or a block as wide as K — ONNX
Runtime's QMoE reads a last dimension of 1 as a row); its zero points (inputs 11-13, optional, uint8) are packed as
the weights are (two 4-bit ones a byte, the low nibble the even block or row): [E, N, ⌈blocks / pack⌉] for blocks,
[E, ⌈N / pack⌉] for rows; without them the middle level (8 for 4 bits, 128 for 8) is the zero. w = (q − zp) · scale.

The builder 0.18.0 writes, for the CPU, symmetric experts only (no zero points: "This model only supports symmetric
quantization for `QMoE`", also with `is_symmetric=false`), 4 or 8 bits (`moe_quant_type`), blocks of 32 / 64 / 128
or a row each (`qmoe_block_size`); zero points come from other tools (measured against ONNX Runtime's own QMoE run:
tests/bisect/test_llm_moe_formats.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cp_debug.precision.packed import _attrs, _unpack, array

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import onnx

QMOE_WEIGHTS = ((2, 3, 11), (5, 6, 12), (8, 9, 13))  # (packed weights, scales, zero points) of fc1, fc2, fc3


def qmoe_nodes(model: "onnx.ModelProto") -> list:
    return [n for n in model.graph.node if n.op_type == "QMoE"]


def _zero_points(zp: "np.ndarray", e: int, n: int, blocks: int, bits: int) -> "np.ndarray | None":
    """Zero points as ONNX Runtime's QMoE reads them, float [E·N, blocks] (see the module); None where their shape
    is neither the blocks' nor the rows' layout."""
    import numpy as np

    pack = 8 // bits
    flat = zp.reshape(zp.shape[0], -1)
    if zp.dtype != np.uint8 or zp.shape[0] != e:
        return None
    if zp.ndim == 3 and zp.shape[1:] == (n, -(-blocks // pack)):
        levels = _unpack(flat, bits)[:, :n * zp.shape[2] * pack].reshape(e, n, -1)[..., :blocks]
        return levels.reshape(e * n, blocks).astype(np.float64)
    if zp.ndim == 2 and zp.shape[1] == -(-n // pack) and blocks == 1:
        return _unpack(flat, bits)[:, :n].reshape(e * n, 1).astype(np.float64)
    return None


def qmoe_packed(node, inits: dict) -> list:
    """A QMoE node's expert weights as onnxruntime's contrib op holds them (see the module), each as (its input's
    index, packed bytes [E·N, blocks, bytes a block], scales [E·N, blocks], bits, zero points float [E·N, blocks] or
    None for the middle level). A weight of another layout (a last block shorter than the rest, zero points not of
    the documented shapes, other bits than 4 and 8) is left out (not read)."""
    import numpy as np

    a = _attrs(node)
    bits, block = int(a.get("expert_weight_bits", 4)), int(a.get("block_size", 0))
    names = list(node.input) + [""] * 14
    out = []
    for w, sc, zpi in QMOE_WEIGHTS:
        if not names[w] or names[w] not in inits or names[sc] not in inits or bits not in (4, 8) or \
                (names[zpi] and names[zpi] not in inits):
            continue
        packed, scale = array(inits[names[w]]), array(inits[names[sc]])
        if packed is None or scale is None or packed.ndim != 3 or packed.dtype != np.uint8:
            continue
        e, n, width = packed.shape
        k = width * 8 // bits
        blocks = int(scale.shape[2]) if block > 0 and scale.ndim == 3 and scale.shape[2] > 1 else 1
        if scale.shape[:2] != (e, n) or scale.size != e * n * blocks or width % blocks or \
                (blocks > 1 and blocks * block != k):
            continue
        zp = None
        if names[zpi]:
            raw = array(inits[names[zpi]])
            zp = None if raw is None else _zero_points(raw, e, n, blocks, bits)
            if zp is None:
                continue
        out.append((w, packed.reshape(e * n, blocks, width // blocks), scale.astype(np.float32).reshape(e * n, blocks),
                    bits, zp))
    return out


def qmoe_unread(model: "onnx.ModelProto") -> list[str]:
    """The QMoE nodes of which some expert weight is not read (`qmoe_packed`: another layout)."""
    inits = {i.name: i for i in model.graph.initializer}
    return [n.name for n in qmoe_nodes(model)
            if len(qmoe_packed(n, inits)) < sum(1 for w, _, _ in QMOE_WEIGHTS if w < len(n.input) and n.input[w])]


def qmoe_square_sums(node, inits: dict):
    """Each read QMoE weight's (Σ (q − zp)² of each block [E·N, blocks] in float64, scales, values a block), through
    tables of a byte's Σ q² and Σ q (no float copy of the experts: a large MoE's are gigabytes unpacked):
    Σ (q − z)² = Σ q² − 2 z Σ q + n z²."""
    import numpy as np

    byte = np.arange(256, dtype=np.int64)
    squares = {4: (byte & 0x0F) ** 2 + (byte >> 4) ** 2, 8: byte ** 2}
    plain = {4: (byte & 0x0F) + (byte >> 4), 8: byte}
    for _, packed, scale, bits, zp in qmoe_packed(node, inits):
        s2, s1 = np.empty(scale.shape, np.float64), np.empty(scale.shape, np.float64)
        t2, t1 = squares[bits].astype(np.uint16), plain[bits].astype(np.uint16)
        for r in range(0, len(packed), 4096):  # a band of rows at a time
            s2[r:r + 4096] = t2[packed[r:r + 4096]].sum(axis=-1, dtype=np.uint64)
            s1[r:r + 4096] = t1[packed[r:r + 4096]].sum(axis=-1, dtype=np.uint64)
        values = packed.shape[-1] * 8 // bits
        z = float(2 ** (bits - 1)) if zp is None else zp
        yield s2 - 2.0 * z * s1 + values * z * z, scale, values


def qmoe_weights(node, inits: dict) -> list:
    """`qmoe_packed`'s weights unpacked: (its input's index, levels − zp as float [E·N, blocks, block], scales)."""
    import numpy as np

    out = []
    for w, packed, scale, bits, zp in qmoe_packed(node, inits):
        rows, blocks, width = packed.shape
        q = _unpack(packed.reshape(rows, -1), bits).astype(np.float32).reshape(rows, blocks, -1)
        q -= float(2 ** (bits - 1)) if zp is None else zp.astype(np.float32)[..., None]
        out.append((w, q, scale))
    return out


def qmoe_dequantized(node, inits: dict) -> dict:
    """A QMoE node's expert weights dequantized, input index → float [E, N, K] (`qmoe_weights`' read)."""
    out = {}
    for w, q, scale in qmoe_weights(node, inits):
        e, n = (int(d) for d in inits[node.input[w]].dims[:2])
        out[w] = (q * scale[..., None]).reshape(e, n, -1)
    return out
