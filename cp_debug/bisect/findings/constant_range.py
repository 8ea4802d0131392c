"""A constant or a statistic beyond float16's range at the root cause (issue 115, item 2): said as such.

A trained BatchNorm's running variance (9.79e7 in a text detector converted from Paddle), a weight, a fill: stored
in float16 it is Inf, and what the node computes from it (a channel normalised to 0, a product Inf) is no rounding.
The finding reads the initializers and `Constant` values the root cause's nodes take (`cures/restore.probe_nodes`:
every node its module created, else the node writing its tensor), names the largest beyond the range with its role
(BatchNormalization's scale / bias / mean / variance, a Conv / Gemm / MatMul's weight) and advises keeping the node in
FP32 — the keep set the intervention runs to the outputs (`intervention.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from cp_debug.half import FP16_MAX

_ROLES = {"BatchNormalization": {1: "scale", 2: "bias", 3: "running mean", 4: "running variance"},
          "InstanceNormalization": {1: "scale", 2: "bias"}, "LayerNormalization": {1: "scale", 2: "bias"},
          "Conv": {1: "weight", 2: "bias"}, "ConvTranspose": {1: "weight", 2: "bias"}, "Gemm": {1: "weight", 2: "bias"},
          "MatMul": {1: "weight"}, "ConstantOfShape": {}}


@dataclass(frozen=True)
class ConstantOutOfRange:
    node: str
    op: str
    name: str  # the initializer / Constant output
    role: str
    value: float  # its largest |x|
    count: int  # its elements beyond the range
    index: int = -1  # the node's input it is
    where: str | None = None  # read from the subject's graph: what a user's file holds in its place

    def text(self) -> str:
        stat = "a statistic" if "running" in self.role else "a constant"
        return (f"{stat} beyond float16's range at {self.op} '{self.node}': its {self.role} '{self.name}' reaches "
                f"|x| = {self.value:.3g} > {FP16_MAX:g} ({self.count} element(s)): "
                f"{'Inf in FP16' if self.where is None else self.where}, and what the node "
                f"computes from it is no rounding; keep '{self.node}' in FP32 (--keep-fp32 {self.node}) or fold it "
                "into its neighbour before the conversion")


def constant_out_of_range(run, state, stage: int, probe: str) -> ConstantOutOfRange | None:
    """The largest constant beyond float16's range that `probe`'s nodes read, else None."""
    from cp_debug.bisect.cures.restore import own_nodes

    own = own_nodes(run, state, probe)
    if own is None:
        return None
    model, mine = own
    found = _largest(model, mine)
    if state.label in getattr(run, "deployed", {}):
        # a user's FP16 file holds the constant as its converter wrote it: onnxconverter-common clamps it to its
        # max_finite_val (PaddleOCR's detector's running variance 9.79e7 → 1e4, no Inf to see): the subject's graph,
        # whose nodes the file's keep by name, holds the value the training left
        ref = _largest(run.subject.stages[stage].onnx(), mine)
        held = _held(model, ref.node, ref.index) if ref is not None else None
        if ref is not None and (found is None or ref.value > found.value) and not (held or 0) > FP16_MAX:
            # (a file that keeps the value whole kept its node in FP32: not this cause)
            found = replace(ref, where=None if held is None else "Inf in the file" if not np.isfinite(held) else
                            _clamped(run.subject.stages[stage].onnx(), ref.name, held))
    return found


def _clamped(model, name: str, held: float) -> str:
    """What a converter's clamp at `held` changed: every element beyond it, not only those beyond float16's range
    (natasha's syntax parser: a running variance 1.18e5 in 3 elements, 76 of 128 beyond the converter's 1e4)."""
    from onnx import numpy_helper

    from cp_debug.graph.model import constant_tensors

    t = constant_tensors(model.graph).get(name)
    text = f"the file holds it clamped to {held:.4g} (its converter's bound)"
    if t is None:
        return text
    arr = np.abs(numpy_helper.to_array(t).astype(np.float64))
    return f"{text}, {int((arr > held).sum())} of its {arr.size} element(s) beyond that bound"


def _held(model, node: str, k: int) -> float | None:
    """The largest |x| a file's node `node` reads at input `k`, through the Casts a converter put before it."""
    from onnx import numpy_helper

    made = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name: i for i in model.graph.initializer}
    at = next((n for n in model.graph.node if n.name == node), None)
    if at is None or k < 0 or k >= len(at.input):
        return None
    name = at.input[k]
    while name in made and made[name].op_type == "Cast":
        name = made[name].input[0]
    t = inits.get(name)
    if t is None and name in made and made[name].op_type == "Constant":
        t = next((a.t for a in made[name].attribute if a.name == "value"), None)
    return None if t is None else float(np.abs(numpy_helper.to_array(t).astype(np.float64)).max())


def _largest(model, mine: set[str]) -> ConstantOutOfRange | None:
    from onnx import numpy_helper

    from cp_debug.graph.model import constant_tensors

    consts = constant_tensors(model.graph)
    found = None
    for node in model.graph.node:
        if node.name not in mine:
            continue
        values = [(k, x) for k, x in enumerate(node.input) if x in consts]
        if node.op_type == "ConstantOfShape":
            values += [(-1, a.t) for a in node.attribute if a.name == "value"]
        for k, x in values:
            arr = numpy_helper.to_array(consts[x] if isinstance(x, str) else x).astype(np.float64, copy=False)
            if not np.issubdtype(arr.dtype, np.floating) or not arr.size:
                continue
            big = np.abs(arr[np.isfinite(arr)])
            if big.size and float(big.max()) > FP16_MAX and (found is None or big.max() > found.value):
                role = "fill" if k == -1 else _ROLES.get(node.op_type, {}).get(k, f"input {k}")
                found = ConstantOutOfRange(node.name, node.op_type, x if isinstance(x, str) else f"{node.name}.value",
                                           role, float(big.max()), int((big > FP16_MAX).sum()), k)
    return found
