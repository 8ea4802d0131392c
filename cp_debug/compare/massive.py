"""A massive channel hides the rest of its tensor's error (issue 116, s11).

Trained LLMs carry a few residual-stream channels ~1000x the rest (massive activations); the corpus's planted ones are
250 against ~0.25. A tensor's relative RMS error is its error over its RMS, and such a channel is nearly all of that
RMS: an error of 1.1 in the other channels, four times their size, reads 0.011 of the whole (the massive-channel
Mistral's layer-1 output, `tests/data/llm/mistral_inner`, against the 3 units of 0.089 a weight-only file is held
to). The norms that read the residual stream weigh that channel as they were trained to (0 in the corpus), so the
rest is what the layers after it see. A probe of a weight-only file whose reference holds massive channels along
its last axis is therefore also measured without them, and judged by that measure where it is the worse.
"""

from __future__ import annotations

import numpy as np

# a channel whose RMS (over the other axes) is this many times the median channel's is massive (the corpus's: 1000x;
# a layer's widest ordinary channels reach 3-5x)
MASSIVE = 20.0
MIN_CHANNELS = 32  # a hidden axis, not a short one (a box's 4 coordinates, a class axis of 3)


def massive_channels(ref) -> np.ndarray | None:
    """The indices along `ref`'s last axis of its massive channels (`MASSIVE`), at most an eighth of them; None
    where it has none (or is no float tensor of rank ≥ 2 with `MIN_CHANNELS` channels)."""
    a = np.asarray(ref)
    if a.ndim < 2 or a.shape[-1] < MIN_CHANNELS or not np.issubdtype(a.dtype, np.floating):
        return None
    flat = a.reshape(-1, a.shape[-1])
    rms = np.sqrt(np.einsum("ij,ij->j", flat, flat, dtype=np.float64) / max(1, flat.shape[0]))
    med = float(np.median(rms))
    if not np.isfinite(rms).all() or med <= 0:
        return None
    big = np.flatnonzero(rms >= MASSIVE * med)
    return big if 0 < big.size <= a.shape[-1] // 8 else None


def rest_diff(name: str, ref, value, tol=None):
    """(`value`'s diff against `ref` without `ref`'s massive channels, the words) where that rel. RMS error is the
    worse; None where `ref` has none or it is not."""
    from cp_debug.compare.diff import TensorDiff

    cut = without(ref, value)
    if cut is None:
        return None
    r, (v,), words = cut
    whole = TensorDiff.from_arrays(name, ref, value, tol)
    rd = TensorDiff.from_arrays(name, r, v, tol)
    if not rd.rel_rmse > whole.rel_rmse:
        return None
    return rd, f"{words} (rel. RMSE {whole.rel_rmse:.3g} with them)"


def without(ref, *values) -> tuple[np.ndarray, list, str] | None:
    """`ref` and `values` (None kept) without `ref`'s massive channels, and the words for it; None where it has none."""
    big = massive_channels(ref)
    if big is None:
        return None
    a = np.asarray(ref)
    keep = np.setdiff1d(np.arange(a.shape[-1]), big)
    rms = np.sqrt(np.mean(np.square(a.reshape(-1, a.shape[-1])[:, big].astype(np.float64))))
    rest = np.sqrt(np.mean(np.square(a.reshape(-1, a.shape[-1])[:, keep].astype(np.float64))))
    words = (f"channel(s) {', '.join(map(str, big[:4].tolist()))} massive ({rms:.3g} against the rest's "
             f"{rest:.3g} rms): judged without them, as they hide the rest's error")
    return a[..., keep], [None if v is None else np.asarray(v)[..., keep] for v in values], words
