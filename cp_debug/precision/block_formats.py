"""Block-scaled formats NVFP4 and MXFP8, their rounding in numpy: the reference every emulation here is checked against.

**NVFP4** (NVIDIA ModelOpt's `NVFP4QTensor`, `NVFP4_DEFAULT_CFG`): E2M1 elements {0, 0.5, 1, 1.5, 2, 3, 4, 6}, blocks
of 16 values along the reduction axis, two scales. A float32 per-tensor scale `s2 = amax / (6 · 448)` (weights: their
own max |w|; activations: the calibrated max, ModelOpt's "max" algorithm), and per block an E4M3 scale
`q = e4m3(block_amax / (6 · s2))` (a block whose amax is 0 takes 1.0 before the cast, as ModelOpt's). The value is
`e2m1(x / (q · s2)) · (q · s2)`: what ModelOpt's export writes as FP4 data behind two chained DequantizeLinear (the
E4M3 block scale over the FP32 tensor scale) and what `trt::TRT_FP4DynamicQuantize` computes for an activation.
E4M3's smallest subnormal is 2^-9, so a block whose amax lies below `amax · 2^-10 / 448` (2.2e-6 of the tensor's
amax) gets a block scale of 0: the whole block flushes to zero (ModelOpt divides by that 0 and multiplies by it
again). Such blocks are counted (`nvfp4_qdq`'s share), the reason the precision report names.

**MXFP8** (OCP microscaling, ModelOpt's `MXFP8QTensor`): E4M3 elements, blocks of 32, one power-of-two (E8M0) scale
per block `2^ceil(log2(block_amax / 448))` (exponent clamped to ±127; -127 for an all-zero block), no tensor scale:
nothing to calibrate. The exponent here is the exact ceiling; ModelOpt takes `ceil(torch.log2(·))` in float32,
which rounds a block amax within a float32 ulp above 448 · 2^k down to k (its values then clamp at 448: one E4M3
step apart at that one value).

Rounding: E2M1 and E4M3 both round to nearest, ties to even, and saturate (±6, ±448).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

E2M1_MAX = 6.0
E4M3_MAX = 448.0
E2M1_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
E8M0_MIN, E8M0_MAX = -127, 127


@dataclass(frozen=True)
class BlockFormat:
    """One block-scaled format: its name (the spec's precision), block length, whether a calibrated per-tensor scale
    sits over the block scales (NVFP4's two levels; MXFP8 has none), and how the report describes it."""

    name: str
    block: int
    calibrated: bool
    describe: str


NVFP4 = BlockFormat("nvfp4", 16, True, "NVFP4: E2M1 values, an E4M3 scale per 16 over an FP32 tensor scale "
                                       "amax/(6·448) (ModelOpt's two-level scheme)")
MXFP8 = BlockFormat("mxfp8", 32, False, "MXFP8: E4M3 values, a power-of-two (E8M0) scale per 32 (OCP microscaling)")
FORMATS = {f.name: f for f in (NVFP4, MXFP8)}


def round_e2m1(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to E2M1 (nearest, ties to even, saturating at ±6): steps of 0.5 below 2, of 1 in
    [2, 4), of 2 from 4 (numpy's `round` is half-to-even, as ONNX's `Round`)."""
    x = np.asarray(x, np.float32)
    a = np.abs(x)
    r = np.where(a < 2, np.round(a * 2) * np.float32(0.5),
                 np.where(a < 4, np.round(a), np.minimum(np.round(a * np.float32(0.5)) * 2, E2M1_MAX)))
    return (np.sign(x) * r).astype(np.float32)


def round_e4m3(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to FLOAT8E4M3FN (nearest even, saturating at ±448), back in float32."""
    import ml_dtypes

    return np.clip(np.asarray(x, np.float32), -E4M3_MAX, E4M3_MAX).astype(ml_dtypes.float8_e4m3fn).astype(np.float32)


def tensor_scale(amax: float) -> np.float32:
    """NVFP4's per-tensor scale `amax / (6 · 448)` in float32 (1.0 for an all-zero tensor, as ModelOpt's export)."""
    return np.float32(amax) / np.float32(E2M1_MAX * E4M3_MAX) if amax > 0 else np.float32(1.0)


def blocked(x: np.ndarray, axis: int, block: int) -> tuple[np.ndarray, tuple]:
    """`x` with `axis` moved last, zero-padded to a multiple of `block` and split into blocks: (…, nblocks, block);
    and what `unblocked` needs to undo it."""
    moved = np.moveaxis(np.asarray(x, np.float32), axis, -1)
    k = moved.shape[-1]
    pad = -k % block
    if pad:
        moved = np.concatenate([moved, np.zeros((*moved.shape[:-1], pad), np.float32)], axis=-1)
    return moved.reshape(*moved.shape[:-1], -1, block), (axis, k, moved.shape)


def unblocked(b: np.ndarray, how: tuple) -> np.ndarray:
    axis, k, shape = how
    return np.moveaxis(b.reshape(shape)[..., :k], -1, axis)


def nvfp4_qdq(x: np.ndarray, axis: int, amax: float | None = None) -> tuple[np.ndarray, float]:
    """`x` quantized to NVFP4 and back (module docstring), blocks of 16 along `axis`, tensor scale from `amax`
    (None: x's own max |x|, as for a weight); and the share of its nonzero blocks that flush to zero."""
    b, how = blocked(x, axis, NVFP4.block)
    amax = float(np.abs(b).max()) if amax is None and b.size else (amax or 0.0)
    s2 = tensor_scale(amax)
    q, share = flush_share(np.abs(b).max(axis=-1, keepdims=True), s2)
    p = (q * s2).astype(np.float32)
    out = round_e2m1(b / np.where(q == 0, np.float32(1.0), p)) * p  # q = 0: the block flushes (ModelOpt: x/0 · 0)
    return unblocked(out.astype(np.float32), how), share


def flush_share(block_amax: np.ndarray, s2: np.float32) -> tuple[np.ndarray, float]:
    """NVFP4's E4M3 block scales `q` of blocks of these amaxes under tensor scale `s2` (an all-zero block's: 1), and
    the share of the nonzero blocks whose scale rounds to 0 (below 2^-10: the block flushes)."""
    raw = np.where(block_amax == 0, np.float32(1.0), block_amax / (np.float32(E2M1_MAX) * s2))
    q = round_e4m3(raw)
    nonzero = block_amax > 0
    return q, float(np.count_nonzero(nonzero & (q == 0)) / max(np.count_nonzero(nonzero), 1))


def e8m0_exponent(block_amax: np.ndarray) -> np.ndarray:
    """MXFP8's shared exponent per block: the exact ceil(log2(amax / 448)), -127 for 0, clamped to ±127."""
    d = np.asarray(block_amax, np.float32) / np.float32(E4M3_MAX)
    _, e = np.frexp(d)  # d = m · 2^e, m in [0.5, 1): ceil(log2 d) = e, or e - 1 where d is a power of two
    e = np.where(np.frexp(d)[0] == 0.5, e - 1, e)
    return np.clip(np.where(d > 0, e, E8M0_MIN), E8M0_MIN, E8M0_MAX).astype(np.float32)


def mxfp8_qdq(x: np.ndarray, axis: int) -> np.ndarray:
    """`x` quantized to MXFP8 and back: blocks of 32 along `axis`, E4M3 values under a power-of-two block scale."""
    b, how = blocked(x, axis, MXFP8.block)
    scale = np.ldexp(np.float32(1.0), e8m0_exponent(np.abs(b).max(axis=-1, keepdims=True)).astype(np.int32))
    out = round_e4m3(b / scale.astype(np.float32)) * scale.astype(np.float32)
    return unblocked(out.astype(np.float32), how)
