"""Two quantized terms whose difference cancels (issue 115, items 1 and 2: a set of tensors as a candidate, the
reason the mechanism): a LayerNorm written as ops with its variance as E[x²] − E[x]² (a JAX / TensorFlow model
through tf2onnx: magika's file-type classifier), both terms read through their own Q/DQ pairs. Each term is rounded
at its own step (magika: 0.0018, their ranges [0, 0.47] over 255 levels), small against the terms; their
difference, the variance, is of the order of a step (its median 2.6 steps, its smallest 0.13): the subtraction
computes nothing wrong itself (its local error 0) and amplifies the terms' rounding (magika's ×8.95, relative RMS
0.0155 → 0.138), the rsqrt after it more, and the file's label flips (json → snap).

The candidates (`restorations`, tried by `intervention.confirm` after the ranked, until one brings the outputs
back): a probe the run finds diverged, written by a Sub whose own (local) error is at most `OWN` of its propagated
error and which amplifies the error flowing in at least `AMPLIFIES`×, whose two inputs each read through a Q/DQ pair:
each term's writer left out of INT8 alone (named by the term's probe: magika's JSON file is back with E[x]² float
alone, E[x²] float alone leaves it changed), then both together (named by the Sub's probe: every file back), each
as the file's own quantization leaves a node out (`nodes_to_exclude`), the mechanism in its words (the terms'
steps, the difference in steps, the amplification)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.cures.restore import Restoration
    from cp_debug.bisect.result import ProbeResult
    from cp_debug.bisect.run_state import CandidateState, RunState

AMPLIFIES = 4.0  # the subtraction's output error over the error flowing into it (relative RMS)
OWN = 0.1  # its own error (local max abs) at most this share of its propagated one: the terms' rounding, not its own
MOST = 2  # subtractions tried at most (the first diverged, in the run's order)


def restorations(run: "RunState", state: "CandidateState", stage: int, results: list["ProbeResult"]
                 ) -> list["Restoration"]:
    """Each cancelling subtraction's terms left out of INT8, each alone then both (module docstring), at most `MOST`
    subtractions."""
    from dataclasses import replace

    from cp_debug.bisect.cures.restore import EXCLUDE, restoration
    from cp_debug.precision.int8 import pair_scale

    st = run.stage_of(state.label, stage)
    pm, model = st.probe_map(), st.onnx()
    producer = {o: n for n in model.graph.node for o in n.output}
    out: list[Restoration] = []
    for r in results:
        p = run.probes.get(r.probe)
        if len(out) == 3 * MOST or p is None or p.stage != stage or not _amplified(r):
            continue
        sub = _writer(producer, r.probe if p.kind == "output" else pm.tensors.get(r.probe))
        if sub is None or sub.op_type != "Sub" or len(sub.input) != 2:
            continue
        terms = [_term(producer, t) for t in sub.input]
        if any(t is None for t in terms):
            continue
        probes = [_probe_of(pm, run, q.input[0], dq.output[0]) for q, dq in terms]
        rs = [restoration(run, state, x) if x is not None else None for x in probes]
        if any(x is None or x.how != EXCLUDE for x in rs):
            continue
        words = _words(run, r, probes, [pair_scale(model, q) for q, _ in terms], sub.name)
        out += [replace(x, source=f"{words}; this term left out of INT8 alone", segment=False) for x in rs]
        out.append(replace(rs[0], probe=r.probe, nodes=tuple(dict.fromkeys(n for x in rs for n in x.nodes)),
                           source=f"{words}; both terms left out of INT8 together", segment=False))
    return out


def _amplified(r: "ProbeResult") -> bool:
    d, local = r.diff, r.local
    return (r.status == "diverged" and d is not None and r.amplification is not None
            and r.amplification >= AMPLIFIES and local is not None and np.isfinite(d.max_abs)
            and local.max_abs <= OWN * d.max_abs)


def _writer(producer: dict, tensor: str | None):
    """The node computing `tensor`, behind a Q/DQ pair on it."""
    n = producer.get(tensor) if tensor else None
    while n is not None and n.op_type in ("QuantizeLinear", "DequantizeLinear"):
        n = producer.get(n.input[0])
    return n


def _term(producer: dict, tensor: str):
    """(QuantizeLinear, DequantizeLinear) where `tensor` is read through a Q/DQ pair, else None."""
    dq = producer.get(tensor)
    q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
    return (q, dq) if q is not None and q.op_type == "QuantizeLinear" and q.input[0] in producer else None


def _probe_of(pm, run: "RunState", tensor: str, dequantized: str) -> str | None:
    """The probe holding a term (its float tensor, or its pair's dequantized output)."""
    if tensor in run.probes:
        return tensor
    by_tensor = {t: p for p, t in pm.tensors.items()}
    return by_tensor.get(dequantized) or by_tensor.get(tensor)


def _words(run: "RunState", r: "ProbeResult", probes: list, steps: list, sub: str) -> str:
    """The mechanism: the terms' steps, the difference in steps (the reference's, where stored), the amplification."""
    said = f"Sub '{sub}' subtracts two terms ({', '.join(probes)}), each rounded by its own Q/DQ pair"
    if all(s is not None for s in steps):
        said += f" (steps {' and '.join(f'{s:.3g}' for s in steps)})"
        diff = run.store.get(r.probe) if r.probe in run.store else None
        if diff is not None and np.size(diff):
            mag = np.abs(np.asarray(diff, np.float64)) / max(steps)
            said += f", their difference a median {np.median(mag):.2g} steps (the smallest {mag.min():.2g})"
    return (f"{said}: the subtraction cancels them and amplifies their rounding ×{r.amplification:.3g} (relative "
            f"RMS {r.diff.rel_rmse / r.amplification:.3g} → {r.diff.rel_rmse:.3g})")
