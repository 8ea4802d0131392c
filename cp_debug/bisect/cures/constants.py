"""A constant as a root cause candidate (issue 115, item 1: "tensors are candidates too … a constant"): a user's file
whose constant — a weight, a statistic, a fill, an eps — differs from the reference's by more than the file's format
rounds it (a weight stored from other values or at another scale, a statistic or an eps a converter clamped) is
restored by that one constant replaced with the reference's value, and run at the outputs by the intervention
(`findings/intervention.py`), as a Concat's shared scale is (`shared_scale.py`).

The file's nodes keep the reference's names (quantizers and converters do): each node of both graphs is read input by
input, the file's value as the node reads it — an initializer, a `Constant`, or a `DequantizeLinear` of one
(dequantized at its scale and zero point) — against the reference's of the same slot. Off: an element further from the
reference's than its format's rounding (float16: a 2⁻¹⁰ relative step, its smallest subnormal beside zero; an
integer level: one step of its scale; float32: 1e-6 relative). The constants with elements off are ranked by their
relative RMS difference (from `SMALL` on), at most `TRIED` tried. Restored, the node reads the reference's value in
the dtype it read before (a float16 file: the reference's value in float16 — a statistic beyond float16's range
stays Inf there, no cure by a constant alone).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TRIED = 3  # the differing constants restored one by one, most off first
SMALL = 0.01  # a constant whose rel. RMS difference is below this is not tried (a float16 converter's tiny values
# clamped to 1e-7 in a weight: 2e-4 on PaddleOCR's detector)


@dataclass(frozen=True)
class ConstantOff:
    """One constant of the file off the reference's: where it is read (node, op, input slot), its name in the file,
    the share of its elements off, its relative RMS difference and the reference's value (in the dtype the node
    reads)."""

    node: str
    op: str
    slot: int
    name: str
    share: float
    rel: float
    value: np.ndarray = field(compare=False, repr=False)

    def put(self, model):
        """`model` with this constant's node reading the reference's value (a new initializer) in its slot."""
        import onnx
        from onnx import numpy_helper

        m = onnx.ModelProto()
        m.CopyFrom(model)
        name = f"{self.name}__cpdebug_reference"
        m.graph.initializer.append(numpy_helper.from_array(self.value, name))
        for n in m.graph.node:
            if n.name == self.node:
                n.input[self.slot] = name
        return m

    def words(self) -> str:
        return (f"the constant {self.name!r} of {self.op} {self.node!r} replaced by the reference's value: the file's "
                f"is off it in {round(self.share * self.value.size)} of its {self.value.size} element(s), rel. RMS "
                f"difference {self.rel:.3g}")


def constants_off(model, reference) -> list[ConstantOff]:
    """The constants of `model` (a user's file) off `reference`'s (module docstring), most off first."""
    from onnx import numpy_helper

    from cp_debug.graph.model import constant_tensors

    def values(tensors) -> dict[str, np.ndarray]:
        return {name: numpy_helper.to_array(t) for name, t in tensors.items()}

    protos = constant_tensors(model.graph)
    held, ref = values(protos), values(constant_tensors(reference.graph))
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    theirs = {n.name: n for n in reference.graph.node if n.name}
    found = []
    for node in model.graph.node:
        other = theirs.get(node.name)
        if other is None or other.op_type != node.op_type or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for k, (x, y) in enumerate(zip(node.input, other.input)):
            want = ref.get(y)
            if want is None or not np.issubdtype(want.dtype, np.floating):
                continue
            got, step = read_constant(x, held, dq, protos)
            if got is None or got.shape != want.shape:
                continue
            name = dq[x].input[0] if x in dq else x  # a weight stored quantized: its integer initializer
            off = _off(got, want.astype(np.float64), step)
            if off.any():
                rel = float(np.sqrt(np.mean((got - want) ** 2) / max(np.mean(want.astype(np.float64) ** 2), 1e-30)))
                dtype = held[x].dtype if x in held and np.issubdtype(held[x].dtype, np.floating) else np.float32
                found.append(ConstantOff(node.name, node.op_type, k, name, float(off.mean()), rel, want.astype(dtype)))
    return sorted((c for c in found if c.rel >= SMALL), key=lambda c: -c.rel)


def read_constant(x: str, held: dict, dq: dict, protos: dict) -> tuple[np.ndarray | None, object]:
    """The file's value of input `x` as its node reads it (float64), and its rounding: 'f16' / 'f32' for a float
    constant, the scale (broadcast to the value) for a dequantized one (`nbits.dq_parts`: per tensor, axis or block);
    (None, None) for a computed input."""
    from cp_debug.precision.nbits import dq_parts

    if x in held and np.issubdtype(held[x].dtype, np.floating):
        return held[x].astype(np.float64), "f16" if held[x].dtype == np.float16 else "f32"
    parts = dq_parts(dq[x], protos, np.float64) if x in dq else None
    if parts is None:
        return None, None
    q, zero, scale = parts
    return (q - zero) * scale, scale


def _off(got: np.ndarray, want: np.ndarray, step) -> np.ndarray:
    """Which elements of `got` lie further from `want` than their format rounds (module docstring)."""
    d = np.abs(got - want)
    if isinstance(step, str):
        tol = np.abs(want) * (2.0 ** -10 if step == "f16" else 1e-6) + (6e-8 if step == "f16" else 0.0)
        return ~(d <= tol) & ~(np.isinf(got) & np.isinf(want))
    return ~(d <= 1.01 * step)  # an integer level: within one step of its scale (a saturated end too)


def restorations(run, state, stage: int) -> list:
    """Each constant of a user's file off the reference's (at most `TRIED`) as the intervention restores it
    (`restore.CONSTANT`), named by the probe of the node that reads it (its output's, through its Q/DQ pair)."""
    from cp_debug.bisect.cures.restore import CONSTANT, Restoration

    if state.spec.onnx_dir is None:
        return []
    st = run.stage_of(state.label, stage)
    model, pm = st.onnx(), st.probe_map()
    if pm is None:
        return []
    by_tensor = {t: p for p, t in pm.tensors.items() if p in run.probes}
    readers: dict[str, list] = {}
    for n in model.graph.node:
        for x in n.input:
            readers.setdefault(x, []).append(n)

    def probe_of(t: str) -> str | None:  # a tensor's probe, else the one mapped to it through its Q/DQ pair
        pairs = [d.output[0] for q in readers.get(t, ()) if q.op_type == "QuantizeLinear"
                 for d in readers.get(q.output[0], ()) if d.op_type == "DequantizeLinear"]
        return next((by_tensor[x] for x in [t, *pairs] if x in by_tensor), None)

    out = []
    for c in constants_off(model, run.subject.stages[stage].onnx()):
        node = next(n for n in model.graph.node if n.name == c.node)
        probe = next((q for t in node.output if (q := probe_of(t)) is not None), None)
        if probe is not None:
            out.append(Restoration(probe, stage, CONSTANT, nodes=(c.node,), tensor=c.name, detail=c))
        if len(out) == TRIED:
            break
    return out

