"""Weight-only block formats a file holds (issue 116): `MatMulNBits` (com.microsoft; ONNX Runtime GenAI's model builder,
`MatMulNBitsQuantizer`), its weights dequantized, and the rounding they carry — a precision of its own.

A MatMulNBits weight is stored as `bits`-bit integers in blocks of `block_size` values along K, one float scale (and
an optional zero point, else the middle level: 8 for 4 bits, 128 for 8) per block: w = (q − zp) · scale. The file
has no float weight to compare with, so the rounding is measured from the weights themselves: round-to-nearest
leaves each element within half a step, step²/12 of mean square error (a uniform rounding), and the step is the
block's scale. The unit of a file is √(Σ step²/12) ÷ √(Σ w²) over all its MatMulNBits weights: the relative RMS
error the rounding puts on a weight, hence on a matmul's output of uncorrelated inputs (measured on the corpus's
builder INT4 files: 0.08-0.09 — one layer's own error there is 0.08).

`accuracy_level=4` (the CPU default of the builder) makes ORT quantize the activation too, per block of `block_size`
values along K to INT8 (step = the block's max |x| / 127): a precision of its own ("-a8"), whose nominal unit is the
one of Gaussian values (a block of 32's max |x| ≈ 2.4 σ: 2.4 / (127 √12) = 0.0055 of the RMS) — a massive channel in a
block (a trained LLM's residual stream) rounds its block's other values to nothing, far beyond that.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING

from cp_debug.precision.packed import _attrs, _unpack, array  # noqa: F401 (array: nbits.array, used elsewhere)
from cp_debug.precision.qmoe import qmoe_nodes, qmoe_square_sums

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import onnx

# the nominal units (where a file's own weights are not read): 4-bit blocks of 32 Gaussian weights (max ≈ 2.4 σ over
# 7.5 levels: step 0.32 σ, /√12) and 8-bit ones (127.5 levels); INT8 activations per block (see the module)
NOMINAL_UNIT = {4: 0.09, 8: 0.0055}
A8_UNIT = 0.0055
FOUR_BITS = (21, 22)  # onnx.TensorProto.UINT4, INT4


def nbits_nodes(model: "onnx.ModelProto") -> list:
    return [n for n in model.graph.node if n.op_type == "MatMulNBits"]



def nbits_precision(model: "onnx.ModelProto") -> str | None:
    """"int4w" / "int8w" (the fewest bits any MatMulNBits holds), "-a8" added where any runs at accuracy_level 4
    (INT8 activations); "int4w" for 4-bit DequantizeLinear weights (`held.weight_only_dq`: where nothing else is
    quantized); None for a file without either."""
    nodes = nbits_nodes(model)
    if not nodes:
        return "int4w" if dq_weight_nodes(model) else None
    attrs = [_attrs(n) for n in nodes]
    bits = min(int(a.get("bits", 4)) for a in attrs)
    a8 = any(int(a.get("accuracy_level", 0)) == 4 for a in attrs)
    return f"int{bits}w" + ("-a8" if a8 else "")


def dq_weight_nodes(model: "onnx.ModelProto") -> list:
    """The DequantizeLinear nodes reading a 4-bit initializer (INT4 / UINT4: `MatMulNBitsQuantizer`'s QDQ format,
    opset 21's blockwise `block_size`): weight-only 4-bit weights in the standard ops."""
    inits = {i.name: i.data_type for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) in FOUR_BITS]


def dequantize_dq(node, inits: dict) -> "np.ndarray | None":
    """The float weight a DequantizeLinear of an initializer stands for, with the file's own numbers: (x − zero
    point) × scale, per tensor, per axis (`axis`) or per block of `block_size` along `axis` (opset 21); None where a
    part is not an initializer or the shapes do not fit."""
    parts = dq_parts(node, inits)
    return None if parts is None else (parts[0] - parts[1]) * parts[2]


def dq_parts(node, inits: dict, dtype=None):
    """(x, zero point, scale) of a DequantizeLinear of initializers (`inits`: name → TensorProto), each of x's shape
    in `dtype` (float32 by default; float64 keeps an int32 bias's levels past 2^24 exact) — per tensor, per axis or
    per block, with the file's own numbers; or None."""
    names = list(node.input) + [""] * 3
    if names[0] not in inits or names[1] not in inits:
        return None
    x, scale = array(inits[names[0]]), array(inits[names[1]])
    zp = array(inits[names[2]]) if names[2] and names[2] in inits else None
    if x is None or scale is None or (names[2] and zp is None):
        return None
    a = _attrs(node)
    return dq_arrays(x, scale, zp, int(a.get("axis", 1)), int(a.get("block_size", 0)), dtype)


def dq_arrays(x, scale, zp, axis: int = 1, block: int = 0, dtype=None):
    """`dq_parts` of arrays: (x, zero point, scale) of a DequantizeLinear reading levels `x` with `scale` and `zp`
    (None: 0) along `axis` (per tensor where `scale` holds one value; per block of `block` elements where set), each
    of x's shape in `dtype` (float32 by default); None where the shapes do not fit."""
    import numpy as np

    dtype = dtype or np.float32
    x, scale = np.asarray(x).astype(dtype), np.asarray(scale).astype(dtype)
    zp = np.zeros_like(scale) if zp is None else np.asarray(zp).astype(dtype)
    if scale.size == 1:
        return x, np.broadcast_to(zp.reshape(()), x.shape), np.broadcast_to(scale.reshape(()), x.shape)
    axis = axis % x.ndim
    if block:
        if scale.ndim != x.ndim or scale.shape[axis] != -(-x.shape[axis] // block) or zp.shape != scale.shape:
            return None
        zp, scale = (np.repeat(t, block, axis=axis).take(range(x.shape[axis]), axis=axis) for t in (zp, scale))
        return (x, zp, scale) if scale.shape == x.shape else None
    shape = [1] * x.ndim
    shape[axis] = -1
    return x, np.broadcast_to(zp.reshape(shape), x.shape), np.broadcast_to(scale.reshape(shape), x.shape)


def dequantize(node, inits: dict, step: int = 1) -> "np.ndarray | None":
    """The float weight [K, N] a MatMulNBits node stands for (its packed B, scales and zero points dequantized; with
    a `g_idx`, GPTQ's act-order, element k of B's K order takes group g_idx[k]'s scale and zero point, as ONNX
    Runtime computes it); None where a part is not an initializer or the layout is not the one ONNX Runtime
    documents. `step` > 1: its every step-th row only (`w[::step]`, the same values: each element is (q − zp) ·
    scale alone), read from the packed bytes of those rows (a 0.5 B model's twin projections: 48 whole weights were
    dequantized to sample them)."""
    import numpy as np

    if step > 1:
        return _rows(node, inits, step)
    g = g_idx(node, inits)
    parts = _levels(node, inits) if g is not None else None
    if parts is not None:  # act-order: element k reads its group g[k]'s scale and zero point
        q, scale, zp = parts
        return ((q - (zp[:, g] if np.ndim(zp) else zp)) * scale[:, g]).T
    w = _blocks(node, inits)
    if w is None:
        return None
    q, scale, k, n = w
    return (q * scale[:, :, None]).reshape(n, -1)[:, :k].T


def _rows(node, inits: dict, step: int) -> "np.ndarray | None":
    """`dequantize(node, inits)[::step]`, computed for those rows of K only."""
    import numpy as np

    parts = _packed(node, inits)
    if parts is None:
        return None
    packed, scale, zp, k, _, bits, block = parts
    kk = np.arange(0, k, step)
    blk, pos = kk // block, kk % block
    g = g_idx(node, inits)
    grp = blk if g is None else g[kk]  # the group whose scale the row takes (act-order: g_idx's)
    if bits == 8:
        q = packed[:, blk, pos]
    else:  # the low nibble first (`_unpack`)
        byte = packed[:, blk, pos // 2]
        q = np.where(pos % 2 == 0, byte & 0x0F, byte >> 4)
    q = q.astype(np.float32) - (zp[:, grp] if np.ndim(zp) else zp)
    return (q * scale[:, grp]).T



def _blocks(node, inits: dict):
    """(q − zp as float [N, blocks, block], scales [N, blocks], K, N) of a MatMulNBits node, or None."""
    import numpy as np

    parts = _packed(node, inits)
    if parts is None:
        return None
    packed, scale, zp, k, n, bits, block = parts
    q = _unpack(packed.reshape(n, -1), bits).reshape(n, scale.shape[1], -1)[:, :, :block]
    q = q.astype(np.float32) - (zp[:, :, None] if np.ndim(zp) else zp)
    q.reshape(n, -1)[:, k:] = 0.0  # the last block's padding past K (a block wider than K: 128 of a 64-wide layer)
    return q, scale, k, n


def _packed(node, inits: dict):
    """(its packed B as bytes [N, blocks, bytes a block], scales [N, blocks], zero points (float [N, blocks]: packed
    `bits`-bit levels, or HQQ's float ones as they are; else the middle level), K, N, bits, block_size) of a
    MatMulNBits node, or None (not the layout ONNX Runtime documents)."""
    import numpy as np

    a = _attrs(node)
    k, n, bits, block = int(a.get("K", 0)), int(a.get("N", 0)), int(a.get("bits", 4)), int(a.get("block_size", 0))
    names = list(node.input) + [""] * 4
    if not (k and n and block and bits in (4, 8)) or names[1] not in inits or names[2] not in inits:
        return None
    if names[4] and g_idx(node, inits) is None:
        return None  # a g_idx (slot 4: GPTQ's act-order) not read: never read as in order
    packed, scale = array(inits[names[1]]), array(inits[names[2]])
    if packed is None or scale is None:
        return None
    blocks = -(-k // block)
    if packed.size % (n * blocks) or packed.size // (n * blocks) * (8 // bits) < block or scale.size != n * blocks:
        return None
    packed, scale = packed.astype(np.uint8, copy=False).reshape(n, blocks, -1), scale.astype(np.float32)
    scale = scale.reshape(n, blocks)
    if names[3] and names[3] in inits:
        zp = array(inits[names[3]])
        if zp is None:
            return None
        if zp.dtype.kind == "f":  # HQQ's: unpacked, one float level a block, w = (q − zp) · scale all the same
            if zp.size != n * blocks:
                return None
            zp = zp.astype(np.float32).reshape(n, blocks)
        elif zp.dtype == np.uint8:
            zp = _unpack(zp.reshape(n, -1), bits).reshape(n, -1)[:, :blocks].astype(np.float32)
        else:
            return None
    else:
        zp = np.float32(2 ** (bits - 1))
    return packed, scale, zp, k, n, bits, block


def g_idx(node, inits: dict) -> "np.ndarray | None":
    """A MatMulNBits node's `g_idx` (input 4: GPTQ's act-order, K values each naming the group of scales and zero
    points element k takes; B stays in K's order), or None: none given, not an initializer, or not K groups' indices
    in range (such a node is not read at all: `_packed`)."""
    import numpy as np

    names = list(node.input) + [""] * 5
    if not names[4] or names[4] not in inits:
        return None
    a = _attrs(node)
    k, block = int(a.get("K", 0)), int(a.get("block_size", 0))
    g = array(inits[names[4]])
    if g is None or g.size != k or not block or g.dtype.kind not in "iu":
        return None
    g = g.reshape(-1).astype(np.int64)
    return g if k and 0 <= g.min() and g.max() < -(-k // block) else None


def _levels(node, inits: dict):
    """(B's levels as float [N, K] in K's order, scales [N, groups], zero points [N, groups] or the middle level) of a
    MatMulNBits node `_packed` reads."""
    import numpy as np

    parts = _packed(node, inits)
    if parts is None:
        return None
    packed, scale, zp, k, n, bits, _ = parts
    return _unpack(packed.reshape(n, -1), bits).reshape(n, scale.shape[1], -1)[:, :, :_attrs(node)["block_size"]] \
        .reshape(n, -1)[:, :k].astype(np.float32), scale, zp


def _square_sums(node, inits: dict):
    """(Σ (q − zp)² of each block [N, blocks] in float64, scales [N, blocks], the values each block holds within K
    [blocks]) of a MatMulNBits node, or None: read from the packed bytes through tables of a byte's Σq and Σq² (no
    float copy of the weight: a 0.5 B model's 121 weights, 310 MB packed, were 2.5 GB of float32 unpacked, 1-4 s), a
    band of rows at a time; exact (integers). With a `g_idx` a block is a group: the elements g_idx gives it."""
    import numpy as np

    parts = _packed(node, inits)
    if parts is None:
        return None
    packed, scale, zp, k, n, bits, block = parts
    g = g_idx(node, inits)
    if g is not None:  # act-order: each group's elements, wherever they lie in K
        q, scale, zp = _levels(node, inits)
        q = q.astype(np.float64) - (np.asarray(zp, np.float64)[:, g] if np.ndim(zp) else float(zp))
        member = np.zeros((k, scale.shape[1]))
        member[np.arange(k), g] = 1.0
        return (q * q) @ member, scale, member.sum(axis=0)
    real = np.full(scale.shape[1], block, np.float64)  # the values of each block within K (the last one's fewer)
    real[-1] = k - block * (scale.shape[1] - 1)
    if block * bits % 8 or k % block:  # the last block padded past K: its padding left out, through the floats
        q, scale, _, _ = _blocks(node, inits)
        return np.einsum("nbk,nbk->nb", q, q).astype(np.float64), scale, real
    byte = np.arange(256, dtype=np.int64)
    lo, hi = (byte & 0x0F, byte >> 4) if bits == 4 else (byte, None)
    if np.ndim(zp) == 0:  # one level for all (the middle one): a byte's Σ (q − zp)² itself
        z = int(zp)
        table = (lo - z) ** 2 + ((hi - z) ** 2 if hi is not None else 0)
    else:  # a byte's Σq² (low 32 bits) and Σq (high), summed together
        table = lo * lo + (hi * hi if hi is not None else 0) + ((lo + (hi if hi is not None else 0)) << 32)
    width = block * bits // 8
    if width % 2 == 0 and packed.shape[2] == width and packed.flags.c_contiguous:  # two bytes a lookup: half as many
        table = (table[:, None] + table[None, :]).reshape(-1)  # [hi byte · 256 + lo byte] on a little-endian view
        packed = packed.view("<u2")
        width //= 2
    top = int(table.max())  # gathered: the fewer bytes the better (4 bits at the middle level: ≤ 128 a byte)
    table = table.astype(np.uint8 if top < 1 << 8 else np.uint16 if top < 1 << 16 else np.uint64)
    sums = np.empty(scale.shape, np.uint64)
    kernel = _compiled_sums()
    if kernel is not None:  # one pass, no gathered copy: 0.09 against 0.8 CPU s on a 0.5 B INT4 file's 310 MB
        kernel(table, packed, width, sums)
    step = n if kernel is not None else max(1, (1 << 22) // max(1, scale.shape[1] * width))  # ~4 M lookups a band
    lanes = table.dtype == np.uint16 and width % 4 == 0 and top * width < 1 << 16
    for r in range(0, n if kernel is None else 0, step):
        got = table[packed[r:r + step, :, :width]]
        sums[r:r + step] = _lane_sums(got) if lanes else got.sum(axis=-1, dtype=np.uint32 if top < 1 << 16 else
                                                                  np.uint64)
    if np.ndim(zp) == 0:
        return sums.astype(np.float64), scale, real
    s2, s1 = (sums & 0xFFFFFFFF).astype(np.float64), (sums >> 32).astype(np.float64)
    z = np.asarray(zp, np.float64)
    return s2 - 2.0 * z * s1 + block * z * z, scale, real


_KERNEL: list = []  # numba's compiled table sums (`_compile_sums`), or None where numba is missing: made once
_KERNEL_LOCK = threading.Lock()


def _compiled_sums():
    """The table sums compiled by numba (cached beside the source, as the comparison kernels are), or None without
    numba (the bands of numpy lookups then)."""
    with _KERNEL_LOCK:
        if not _KERNEL:
            try:
                _KERNEL.append(_compile_sums())
            except ImportError:
                _KERNEL.append(None)
    return _KERNEL[0]


def _compile_sums():
    import numba
    import numpy as np

    from cp_debug.compare.numba_start import start

    start()  # numba's target without scipy.linalg (compare/numba_start.py says why)

    @numba.njit(cache=True, nogil=True)
    def table_sums(table, packed, width, out):  # pragma: no cover - compiled
        """out[r, b] = Σ table[packed[r, b, :width]] in uint64 (exact: integers), every byte read once."""
        for r in range(out.shape[0]):
            for b in range(out.shape[1]):
                s = np.uint64(0)
                for j in range(width):
                    s += table[packed[r, b, j]]
                out[r, b] = s

    return table_sums


def _lane_sums(got: "np.ndarray") -> "np.ndarray":
    """Σ over the last axis of uint16 values `got` [..., width] (width a multiple of 4, every sum < 2¹⁶), four at a
    time in the 16-bit lanes of a uint64, then the lanes folded (exact; numpy's sum over a short last axis took 0.3 s
    of a 0.5 B INT4 file's 0.9 s)."""
    import numpy as np

    words = np.ascontiguousarray(got).view(np.uint64)  # [..., width / 4]: four values a word
    acc = words[..., 0].copy()
    for j in range(1, words.shape[-1]):
        acc += words[..., j]
    acc += acc >> 32
    return (acc + (acc >> 16)) & 0xFFFF



def weight_unit(model: "onnx.ModelProto") -> float | None:
    """The relative RMS rounding of the file's MatMulNBits weights and its QMoE's experts, √(Σ step²/12) ÷ √(Σ w²)
    (see the module), with INT8 activations' nominal unit added in quadrature where any node runs at accuracy_level
    4; None without any such weight to read."""
    import numpy as np

    inits = {i.name: i for i in model.graph.initializer}
    err = total = 0.0
    a8 = False
    for node in nbits_nodes(model):
        parts = _square_sums(node, inits)
        a8 = a8 or int(_attrs(node).get("accuracy_level", 0)) == 4
        if parts is None:
            continue
        sums, scale, real = parts
        s2 = scale.astype(np.float64) ** 2  # Σ w² per block is scale² · Σ (q − zp)² (integers: exact)
        err += float(np.sum(s2 * real)) / 12.0
        total += float(np.sum(s2 * sums))
    for node in qmoe_nodes(model):  # a QMoE's experts: 3-D packed weights, one scale a block (or a row)
        for sums, scale, block in qmoe_square_sums(node, inits):
            s2 = scale.astype(np.float64) ** 2
            err += float(np.sum(s2)) * block / 12.0
            total += float(np.sum(s2 * sums))
    for node in dq_weight_nodes(model):  # a blockwise DequantizeLinear's weight: the step is its element's scale
        parts = dq_parts(node, inits)
        if parts is not None:
            x, zp, step = (t.astype(np.float64) for t in parts)
            err += float(np.sum(step ** 2)) / 12.0
            total += float(np.sum(((x - zp) * step) ** 2))
    if not total > 0:
        return None
    unit = math.sqrt(err / total)
    return math.hypot(unit, A8_UNIT) if a8 else unit
