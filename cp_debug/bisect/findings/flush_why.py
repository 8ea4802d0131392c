"""Underflow before a Log / Div / Sqrt / Pow, named at its producer (issue 115, item 2).

An audio model's log-power: `Log(power + 1e-10)`. In float16 the eps (1e-10) and every power below float16's
smallest subnormal (2^-24 ≈ 5.96e-8) flush to 0 *before* the Log, which then makes -Inf: the Log is where the Inf
appears, not where the value is lost, and keeping the Log alone in FP32 reads the same zeros. The finding walks back
from the op that needs a positive input through the element-wise nodes that make it, reads their FP32 values (one run
of the stage's graph in FP32, those tensors exposed), names the eps and the share of values that flush, and tries the
keep set — the producers and the op together — at the outputs (`cures/restore.py`), saying whether it cures them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cp_debug.bisect.findings.eps_why import FP16_SUBNORMAL_MIN

NEEDS_POSITIVE = ("Log", "Div", "Sqrt", "Pow", "Reciprocal")
PRODUCERS = frozenset({"Add", "Mul", "Sub", "Div", "Abs", "Pow", "ReduceSum", "ReduceMean", "Exp"})
_STEPS = 4


@dataclass(frozen=True)
class Flush:
    op: str
    node: str
    producer: str  # the node whose output flushes (the eps Add)
    producer_op: str
    eps: float | None
    share: float  # of the producer's inputs' values below the smallest subnormal
    keep: tuple[str, ...]
    cured: float | None  # the outputs' error ÷ budget with `keep` kept, where tried
    back: bool | None
    # (`restore.Restoration`, `restore.OutputError`) of `keep` run to the outputs: the intervention takes it in
    at_outputs: tuple | None = field(default=None, compare=False)

    def text(self) -> str:
        eps = (f"adds eps {self.eps:g} (below float16's smallest subnormal {FP16_SUBNORMAL_MIN:.3g}: 0 in float16) to "
               if self.eps is not None else "takes ")
        tried = ("" if self.back is None else
                 f"; verified at the outputs: keeping {', '.join(self.keep)} in FP32 brings them back "
                 f"({self.cured:.3g}× their budget)" if self.back else
                 f"; keeping {', '.join(self.keep)} in FP32 does not bring the outputs back ({self.cured:.3g}×)")
        return (f"float16 flushes to zero before the {self.op} '{self.node}': its input's producer {self.producer_op} "
                f"'{self.producer}' {eps}values of which {self.share:.0%} lie below {FP16_SUBNORMAL_MIN:.3g} and "
                f"flush to 0, and the {self.op} of 0 is not finite — keeping the {self.op} alone reads the same "
                f"zeros; keep {', '.join(self.keep)} in FP32 together{tried}")


def flush_before(run, state, stage: int, probe: str) -> Flush | None:
    """The flush before an op needing a positive input among `probe`'s nodes, or None."""
    from cp_debug.bisect.cures.experiment import OrtFp32Reference
    from cp_debug.bisect.cures.restore import KEEP, Restoration, output_error, own_nodes, run_restored
    from cp_debug.precision.layernorm import scalar_constants

    own = own_nodes(run, state, probe)
    if own is None:
        return None
    model, mine = own
    target = next((n for n in model.graph.node if n.name in mine and n.op_type in NEEDS_POSITIVE), None)
    if target is None:
        return None
    writer = {t: n for n in model.graph.node for t in n.output}
    scalars = scalar_constants(model)
    chain, at = [], target.input[1] if target.op_type in ("Div",) and len(target.input) > 1 else target.input[0]
    for _ in range(_STEPS):
        n = writer.get(at)
        if n is None or n.op_type not in PRODUCERS:
            break
        chain.append(n)
        at = next((x for x in n.input if x not in scalars and x in writer), None)
        if at is None:
            break
    if not chain:
        return None
    eps_node = next((n for n in chain if n.op_type == "Add" and any(
        x in scalars and 0 < abs(scalars[x]) < FP16_SUBNORMAL_MIN for x in n.input)), None)
    producer = eps_node or chain[0]
    inputs = [x for x in producer.input if x not in scalars]
    ref = OrtFp32Reference(model, run.ref_feeds[stage], determinism=run.det)(inputs) if inputs else {}
    vals = np.concatenate([np.abs(np.asarray(v, dtype=np.float64)).ravel() for v in ref.values()]) if ref else None
    share = float((vals < FP16_SUBNORMAL_MIN).mean()) if vals is not None and vals.size else 0.0
    eps = next((float(scalars[x]) for x in producer.input if x in scalars), None) if eps_node is not None else None
    if eps is None and share == 0.0:
        return None
    upto = chain.index(producer)
    keep = tuple(n.name for n in [*reversed(chain[:upto + 1 + (1 if upto + 1 < len(chain) else 0)]), target])
    cured = back = tried = None
    if state.spec.runs_onnx and state.spec.onnx_dir is None:
        r = Restoration(probe, stage, KEEP, nodes=keep, source="the flush's keep set")
        err = output_error(run, state, stage, run_restored(run, state, stage, [r]))
        cured, back, tried = err.ratio, err.back, (r, err)
    return Flush(target.op_type, target.name, producer.name, producer.op_type, eps, share, keep, cured, back, tried)
