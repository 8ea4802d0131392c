"""Tensors as candidates (issue 115, item 1): a user's Q/DQ file whose one per-tensor scale covers a Concat of inputs
of very different ranges — a detector head concatenating pixel boxes (0–320) with class scores (0–1) — or a Q/DQ pair
on a graph output.

ONNX Runtime's `quantize_static` quantizes a Concat's output at one scale fitted to all its inputs together, and the
Reshape / Transpose after it (and the graph output's pair) at the same scale: a step of 320/255 ≈ 1.25 holds every
score in one or two levels, and every score reads the same value (0.74 where the reference's are 0.45–0.48: every
detection kept at 0.5, or none). The error is no layer's: each layer's own error is small and the output's relative
error, dominated by the boxes, too; the decision at the scores flips. So the scale itself is a candidate of the
intervention (`intervention.confirm`): restored by removing every Q/DQ pair that reads it (the float values flow
through, as the file reads them without that scale: what the quantizer writes when the Concat is left out, its
`nodes_to_exclude`), and named where that brings the outputs back. Its finding (`SharedScaleWhy` in the catalog)
says the scale, the Concat's inputs with their ranges in steps of it, and the cure in the quantizer's terms.

Found from the file and the reference's values alone: a per-tensor scale read by a QuantizeLinear of a Concat's output
where the Concat's inputs (their reference values, each read where it enters its own QuantizeLinear) span ranges
`RATIO`× apart and the smallest spans at most `LEVELS` steps of the shared scale. A graph output's Q/DQ pair's scale
is a candidate after those (a quantized output is a rounding the application reads directly), then a graph input's
(read directly or through ops that only reshape it: torchfcpe's mel, transposed, at one per-tensor step — its
readers left out of INT8 one at a time leave the others reading the rounded input).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from cp_debug.graph.qdq_pair import float_behind

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.cures.restore import Restoration
    from cp_debug.bisect.run_state import CandidateState, RunState

RATIO = 16.0  # the Concat's inputs' ranges this far apart: four bits of the smaller one lost to the larger
LEVELS = 16  # the smaller input spans at most this many steps of the shared scale
MOST = 2  # scales tried by the intervention at most


@dataclass(frozen=True)
class SharedScale:
    """A per-tensor scale (an initializer) and the Q/DQ pairs reading it: a Concat's shared one (`concat`, its inputs
    as (tensor, |x| max, steps spanned)) or a graph output's (`concat` None)."""

    scale: str
    step: float
    quantize: tuple[str, ...]  # the QuantizeLinear nodes reading it
    dequantize: tuple[str, ...]  # the DequantizeLinear nodes reading their outputs
    concat: str | None = None
    parts: tuple[tuple[str, float, float], ...] = ()
    output: str | None = None  # the graph output a pair writes, where one does
    input: str | None = None  # the graph input a pair reads (through ops that only reshape it), where one does
    reads: str | None = None  # that pair's tensor
    moved: float | None = None  # the input's mean distance to the pair's levels, in steps (`_rounding`)
    leave_out: tuple[str, ...] = ()  # the ops the quantizer is told to leave out: the input's readers, the writer
    cure: object = None  # its `qdq_exclude.ExcludeCure` as the quantizer gives it, tried (`with_cure`)

    def words(self) -> str:
        what = (f"Concat {self.concat!r}'s shared scale" if self.concat else f"the graph output {self.output!r}'s "
                "scale" if self.output else f"the graph input {self.input!r}'s scale")
        return f"{what} {self.scale!r} ({len(self.quantize)} Q/DQ pair(s) removed)"

    def text(self) -> str:
        if self.concat is None and self.output is None:
            return (f"the file reads its graph input {self.input!r} through a per-tensor Q/DQ pair at scale "
                    f"{self.scale!r} (a step of {self.step:.3g}): every value of the input is rounded to that step "
                    f"before the model sees it{_moved(self.moved)}; " + (
                        self.cure.text() if self.cure is not None else
                        f"re-quantize leaving out {_ops(self.leave_out, 'reads')} (ONNX Runtime: `quantize_static("
                        f"..., nodes_to_exclude=[{_listed(self.leave_out)}])`)") + ", or give the input a scale of "
                    "its own range")
        if self.concat is None:
            return (f"the file's graph output {self.output!r} is read through a Q/DQ pair at scale {self.scale!r} "
                    f"(a step of {self.step:.3g}): the application reads its INT8 rounding; " + (
                        self.cure.text() if self.cure is not None else
                        f"re-quantize leaving out {_ops(self.leave_out, 'writes')} (ONNX Runtime: `quantize_static("
                        f"..., nodes_to_exclude=[{_listed(self.leave_out)}])`)"))
        parts = ", ".join(f"{t!r} up to |x| {m:.3g} ({s:.3g} step(s))" for t, m, s in self.parts)
        return (f"one per-tensor INT8 scale covers Concat {self.concat!r}'s inputs of very different ranges: {parts} "
                f"— the scale {self.scale!r} (a step of {self.step:.3g}, read by {len(self.quantize)} Q/DQ pair(s) "
                f"from the Concat on{', the graph output ' + repr(self.output) + ' among them' if self.output else ''})"
                f" holds the smaller input in a few levels; " + (
                    f"{self.cure.text()}; or" if self.cure is not None else
                    f"re-quantize with `nodes_to_exclude=[{self.concat!r}]` (ONNX Runtime: `quantize_static(..., "
                    f"nodes_to_exclude=[{self.concat!r}])`), or") + " give the Concat's inputs scales of their own "
                "(quantize them before it and concatenate in float)")


def shared_scales(run: RunState, state: CandidateState, stage: int) -> list[SharedScale]:
    """The candidate scales of `state`'s own Q/DQ file at `stage` (module docstring), Concats' first; [] where the
    candidate runs no file of its own or the file holds no such scale."""
    from cp_debug.bisect.cures.qdq_fill import entered_at as _entered
    from cp_debug.graph.qdq_pair import QdqIndex

    if state.spec.onnx_dir is None or state.judged_at not in ("int8", "fp8"):
        return []
    st = run.stage_of(state.label, stage)
    pm = st.probe_map()
    if pm is None:
        return []
    model = st.onnx()
    index = QdqIndex.of(model)
    inits, producer = index.inits, index.writer
    entered = _entered(pm, producer, run.store)
    outputs = {o.name for o in model.graph.output}
    found: list[SharedScale] = []
    inputs: list[SharedScale] = []
    graph_inputs = {i.name for i in model.graph.input} - set(inits)
    seen: set[str] = set()
    floats: dict = {}

    def value_of(src: str):
        """The reference's value of `src` (a tensor entering a QuantizeLinear), else the file's own float value of
        it, its Q/DQ pairs removed (a `--torch` run probes no Concat's inputs): one run for every Concat."""
        probe = entered.get(src)
        if probe is not None and probe in run.store:
            return run.store.get(probe)
        if not floats:
            floats.update(_float_values(run, state, stage, model, producer) or {"": None})
        return floats.get(src)
    for q in model.graph.node:
        if q.op_type != "QuantizeLinear" or len(q.input) < 2 or q.input[1] not in inits or q.input[1] in seen:
            continue
        pair = index.pair(q)
        if pair is None or not pair.per_tensor:
            continue
        step = pair.step
        writer = producer.get(q.input[0])
        pairs = _pairs(index, q.input[1])
        out = next((t for d in pairs[1] for n in model.graph.node if n.name == d for t in n.output
                    if t in outputs), None)
        if writer is not None and writer.op_type == "Concat" and step > 0:
            parts = _parts(writer, producer, value_of, step)
            if parts is not None:
                seen.add(q.input[1])
                found.insert(sum(1 for f in found if f.concat), SharedScale(
                    q.input[1], step, *pairs, writer.name, parts, out))
                continue
        if out is not None:
            seen.add(q.input[1])
            found.append(SharedScale(q.input[1], step, *pairs, output=out,
                                     leave_out=_leave_out(model, pairs[1], q.input[0], producer)))
        elif step > 0 and (src := _graph_input(q.input[0], producer, graph_inputs)) is not None:
            seen.add(q.input[1])  # after the outputs' (`MOST`): a model's input read in INT8 levels (torchfcpe's mel)
            moved = _rounding(run.ref_feeds[stage].get(src), pair)
            if moved is None or moved > 0:  # an input on the pair's levels (0 / 1 bits) loses nothing to them
                inputs.append((-(moved or 0.0), len(inputs), SharedScale(
                q.input[1], step, *pairs, input=src, reads=q.input[0], moved=moved,
                leave_out=_leave_out(model, pairs[1], None, producer))))
    return [*found, *(s for *_, s in sorted(inputs, key=lambda x: x[:2]))][:MOST]


def _ops(names: tuple[str, ...], does: str) -> str:
    """The ops to leave out, by name where the file names them."""
    if not names:
        return f"the op that {does} it"
    return f"the op that {does} it, {names[0]!r}" if len(names) == 1 else (
        f"the {len(names)} ops that {does[:-1]} it, {', '.join(map(repr, names))}")


def _listed(names: tuple[str, ...]) -> str:
    return ", ".join(map(repr, names)) if names else "..."


def _leave_out(model, dequantize: tuple[str, ...], tensor: str | None, producer: dict) -> tuple[str, ...]:
    """The named ops a quantizer leaves out to keep the pair's tensor float: its writer (`tensor`: the one the
    QuantizeLinear reads, past ops that only reshape it), else the readers of the pair's dequantized outputs; () where
    one of them has no name (nothing a user could write into `nodes_to_exclude`)."""
    if tensor is not None:
        node = producer.get(tensor)
        while node is not None and node.op_type in _RESHAPES and node.input:
            node = producer.get(node.input[0])
        return (node.name,) if node is not None and node.name else ()
    outs = {t for n in model.graph.node if n.name in dequantize for t in n.output}
    readers = [n.name for n in model.graph.node if outs.intersection(n.input)]
    return tuple(dict.fromkeys(readers)) if readers and all(readers) else ()


def _moved(moved: float | None) -> str:
    if moved is None:
        return ""
    half = " — halfway between two levels: the input's grid and the pair's are offset by half a step" if (
        moved > 0.45) else ""
    return f" (the reference's values lie {moved:.2g} step on average from a level{half})"


def _rounding(value, pair) -> float | None:
    """The mean distance, in steps, of the reference's input `value` to the levels of a per-tensor `pair`
    (`graph/qdq_pair.QdqPair`: its step, its zero point): 0 where every value is a level, 0.5 where each sits halfway
    (RivaGAN's frame, u / 127.5 - 1 against levels k · 2 / 255); None where it is not known."""
    if value is None or not np.size(value):
        return None
    x = np.asarray(value, dtype=np.float64) / pair.step + float(pair.zero.reshape(-1)[0])
    return float(np.mean(np.abs(x - np.round(x))))


_RESHAPES = frozenset({"Transpose", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity", "Cast"})


def _graph_input(t: str, producer: dict, graph_inputs: set[str]) -> str | None:
    """The graph input `t` is, or is made from by ops that only reshape it; else None."""
    for _ in range(8):
        if t in graph_inputs:
            return t
        node = producer.get(t)
        if node is None or node.op_type not in _RESHAPES or not node.input:
            return None
        t = node.input[0]
    return None


def _pairs(index, scale: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names of the QuantizeLinear nodes reading the scale `scale` and of the DequantizeLinear nodes reading
    theirs (each in graph order)."""
    qs = index.quantizers(scale)
    dqs = sorted({id(d): d for q in qs for d in index.readers.get(q.output[0], ()) if d.op_type == "DequantizeLinear"
                  and d.input[0] == q.output[0]}.values(), key=lambda d: index.position[id(d)])
    return tuple(n.name for n in qs), tuple(n.name for n in dqs)


def _float_values(run: RunState, state: CandidateState, stage: int, model, producer: dict) -> dict | None:
    """Every tensor entering a Concat's inputs' QuantizeLinear, as the file computes it with its activations' Q/DQ
    pairs removed (its weights as it stores them), on the reference's stage inputs; None where it cannot run."""
    from cp_debug.bisect.cures.restore import _without_pairs
    from cp_debug.bisect.findings.segment_why import run_segment

    wanted = []
    for n in model.graph.node:
        if n.op_type == "Concat":
            wanted += [src for x in n.input if (src := float_behind(producer, x)) is not None]
    if not wanted:
        return None
    pairs = {n.name for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
    try:
        got = run_segment(run, str(state.spec), _without_pairs(model, pairs), dict(run.ref_feeds[stage]),
                          list(dict.fromkeys(wanted)), spec=state.spec, facts=False)
    except Exception:  # noqa: BLE001 - no float run, no Concat read: the graph output's pair stays a candidate
        return None
    return got.values


def _parts(concat, producer: dict, value_of, step: float):
    """(tensor, |x| max, steps its range spans) of each of `concat`'s inputs, where their ranges lie `RATIO` apart and
    the smallest spans at most `LEVELS` steps; else None (an input whose reference value is unknown: None). An empty
    input is left out."""
    parts = []
    for x in concat.input:
        src = float_behind(producer, x) or x
        value = value_of(src)
        if value is None:
            return None
        v = np.asarray(value, dtype=np.float64)
        if not v.size:  # an empty input (RivaGAN's encoder: a Slice of 0 channels) shares no range
            continue
        parts.append((src, float(np.abs(v).max()), float(v.max() - v.min()) / step))
    spans = [s for _, _, s in parts]
    if len(spans) < 2 or min(spans) > LEVELS or max(spans) < RATIO * max(min(spans), 1.0):
        return None
    return tuple(parts)


def restorations(run: RunState, state: CandidateState, stage: int) -> list[Restoration]:
    """Each candidate scale as the intervention restores it: its Q/DQ pairs removed (`restore.UNPAIRED`), named by
    the probe of the Concat's output (or of the graph output)."""
    from cp_debug.bisect.cures.restore import UNPAIRED, Restoration
    from cp_debug.bisect.cures.qdq_fill import entered_at as _entered

    found = shared_scales(run, state, stage)
    if not found:
        return []
    st = run.stage_of(state.label, stage)
    pm, model = st.probe_map(), st.onnx()
    producer = {o: n for n in model.graph.node for o in n.output}
    entered = _entered(pm, producer, run.store)
    by_tensor = {t: p for p, t in pm.tensors.items()}
    out = []
    for s in found:
        concat = next((n for n in model.graph.node if n.name == s.concat), None)
        probe = None
        for t in (concat.output[0] if concat is not None else None, s.output, s.reads):  # its own, else the output's
            probe = probe or (t if t in run.probes else entered.get(t) or by_tensor.get(t)) if t else probe
        if probe is None and s.input is not None:  # an input read as it is (RivaGAN's frame): its first reader's
            probe = _first_read(model, s, run.probes, by_tensor)
        if probe is not None and probe in run.probes:
            out.append(Restoration(probe, stage, UNPAIRED, nodes=(*s.quantize, *s.dequantize), tensor=s.scale,
                                   detail=s))
    return out


def _first_read(model, s: SharedScale, probes, by_tensor: dict) -> str | None:
    """The probe of the first node (in the graph's order) reading `s`'s pair with a probe on its output: the layer
    that first sees the input's rounding."""
    read = {n.output[0] for n in model.graph.node if n.name in s.dequantize}
    for n in model.graph.node:
        if read & set(n.input):
            for t in n.output:
                probe = t if t in probes else by_tensor.get(t)
                if probe is not None and probe in probes:
                    return probe
    return None


def with_cure(run: RunState, state: CandidateState, restored: Restoration) -> SharedScale:
    """The shared scale the intervention confirmed (`restored.detail`) with its cure tried as the file's quantizer
    gives it (`qdq_exclude.exclusion_cure`): the Concat left out, then with the readers of its pairs that quantize
    what they read — the Concat left out alone keeps its output's pair where a reader quantizes it (pythainlp's
    deepcut: its BatchNorm's `Mul` reads the Concat at one step of 7.46; left out alone, the 21 boundaries of 325 the
    file moves stay moved, with the Mul 20 come back). A graph input's scale: its readers left out (RivaGAN's
    encoder: `Conv_4`, `Concat_57`, `Add_65`); a graph output's: its writer."""
    from cp_debug.bisect.cures.qdq_exclude import exclusion_cure
    from cp_debug.bisect.cures.qdq_removal import QUANTIZES

    found = restored.detail
    if not isinstance(found, SharedScale) or found.concat is None and not found.leave_out:
        return found
    model = run.stage_of(state.label, restored.stage).onnx()
    if found.concat is None:  # a graph input's readers, a graph output's writer: the ops the quantizer leaves out
        ladder = [list(found.leave_out)]
    else:
        producer = {o: n for n in model.graph.node for o in n.output}
        read = {t for n in model.graph.node if n.name in found.dequantize for t in n.output}
        readers = [n.name for n in model.graph.node if read & set(n.input) and (n.op_type in QUANTIZES or any(
            x not in read and x in producer and producer[x].op_type == "DequantizeLinear" for x in n.input))]
        ladder = [[found.concat], *([[found.concat, *readers]] if readers else [])]
    try:
        cure = exclusion_cure(run, state, restored.stage, model, ladder)
    except Exception:  # noqa: BLE001 - untried: the cure said as before, the finding stands on the intervention
        return found
    return replace(found, cure=cure) if cure is not None and cure.passes is not None else found
