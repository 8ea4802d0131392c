"""Why a user's own Q/DQ file loses its values at the root cause (issue 84, item 3; issue 86, item 4): the reasons
cp_debug gives its own INT8 / FP8 conversion, read from the file's own scales.

A deployed INT8 or FP8 Q/DQ file (ONNX Runtime's quantize_static, NVIDIA ModelOpt's ONNX quantizer) is run as it is
and its probes are mapped through its Q/DQ nodes: a tensor read through QuantizeLinear → DequantizeLinear is compared
at the DequantizeLinear's output, and the value that entered the QuantizeLinear is the reference's value of that
probe. So the reference's values at each quantized tensor are known, and the file says its range: the scale (per
tensor or per channel) times the format's largest level (127 for int8, 448 for float8 e4m3fn). The Q/DQ pairs read
are those at the root cause's probe itself (its tensor is a DequantizeLinear's output) and at the inputs of the node
that computes it (its data input and its weight); the first that cannot hold the reference's values is named:
values beyond the range clip (a stale or narrow calibration), or most nonzero values round to zero (a range set by
outliers). A weight stored in float beside its QuantizeLinear (ModelOpt's layout) is read from the file itself.

A scale the file holds as inf, NaN or zero (or a finite one a mask's fill set) comes first, said as what it is
(`quantized/scale_fault.py`), never as a range: ModelOpt stores FP16 scales in its FP16-high-precision mode, and a
scale past 65504 (an outlier channel's amax / 448) is inf there, one below float16's smallest subnormal 0: x / inf
quantizes to 0 and 0 × inf dequantizes to NaN. Before any range, an FP16 overflow between the file's pairs (ModelOpt's
float parts in FP16) where the candidate's probe is inf/NaN and the reference's value past 65504.

Each finding ends with its cure in the producing tool's terms, tried on the file (`qdq_exclude.py`, issue 107 item 6):
the nodes reading the pair left out of the quantizer (with the quantized node whose outlier channels set the range,
where those alone are not enough), or ModelOpt's float parts in FP32.

Its parts, each a module of `quantized/`: a scale no number (`scale_fault.py`), an FP16 overflow between the pairs
(`half_overflow.py`), a weight the file stores quantized against the reference's (`stored_weight.py`), the formats'
levels and a pair's scale and zero point (`levels.py`, through `graph/qdq_pair.py`). Here: which pairs are read, the
range they hold against the reference's values (`_range`), and the cure.
"""

from __future__ import annotations

import numpy as np

from cp_debug.bisect.findings.segment_int8 import FP32_EPS
from cp_debug.bisect.cures.qdq_fill import entered_at
from cp_debug.bisect.findings.quantized.half_overflow import half_overflow
from cp_debug.bisect.findings.quantized.levels import LEVELS, LOST, scale_zero
from cp_debug.bisect.findings.quantized.levels import qdq_format as _format
from cp_debug.bisect.findings.quantized.scale_fault import scale_fault
from cp_debug.bisect.findings.quantized.stored_weight import stored_weight
from cp_debug.bisect.run_state import CandidateState, RunState
from cp_debug.graph.qdq_pair import float_behind

SATURATED = 1e-3  # a share of the values beyond the file's range worth naming


def qdq_file_why(run: RunState, state: CandidateState, probe: str) -> str | None:
    """The finding for the root cause `probe` of a deployed Q/DQ file (module docstring), with the cure in the
    producing tool's terms (`qdq_exclude.py`), or None."""
    if state.spec.onnx_dir is None or state.judged_at not in ("int8", "fp8") or probe not in run.probes:
        return None
    st = run.stage_of(state.label, run.probes[probe].stage)
    pm = st.probe_map()
    t = pm.tensors.get(probe) if pm is not None else None
    if t is None:
        return None
    model = st.onnx()
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name: i for i in model.graph.initializer}
    entered = entered_at(pm, producer, run.store)  # the tensor entering a Q → the probe whose reference value it is
    node = producer.get(t)
    if node is None:
        return None
    pairs = [t] if node.op_type == "DequantizeLinear" else []
    if node.op_type == "DequantizeLinear":  # the probe's own pair (ORT's output Q/DQ), then the node computing it
        behind = float_behind(producer, t)
        inner = producer.get(behind) if behind is not None else None
        node = inner if inner is not None and inner.op_type not in ("QuantizeLinear", "DequantizeLinear") else node
    inner = _biased(node, producer, inits)  # a module probe (--torch) maps to its Linear's bias Add: its MatMul too
    if node.op_type != "DequantizeLinear":
        pairs += [x for x in node.input[:2] if x in producer and producer[x].op_type == "DequantizeLinear"]
        over = half_overflow(run, state, st, model, probe, inner or node)  # the MatMul's, as --onnx names it
        if over is not None:
            return over
    examined = [(x, node) for x in pairs] + [(x, inner) for x in (inner.input[:2] if inner is not None else ())
                                             if x in producer and producer[x].op_type == "DequantizeLinear"]
    for dq_out, node in examined:
        found = _pair_why(run, state, probe, t, dq_out, node, producer, inits, entered)
        if found is None:
            continue
        text, source, value = found
        readers = [n.name for n in model.graph.node if dq_out in n.input] if dq_out == t else [node.name]
        ladder = [readers]
        fill = _fill(model, producer[dq_out], inits, value)  # a constant the graph writes sets the range (a pad)
        if fill is not None:
            text += fill[0]
            ladder += [[fill[1].node, *readers]] + ([list(fill[1].same)] if len(fill[1].same) > 1 else [])
        elif value is not None and source not in inits:  # an activation: the outlier channels that set its range
            text, writer = _set_by(model, source, value, text)
            if writer is not None and writer not in readers:
                ladder.append([writer, *readers])
        elif source is not None and source not in inits:  # its scale no number: the pair, then every such pair
            from cp_debug.bisect.cures.qdq_exclude import bad_scale_sets

            ladder += bad_scale_sets(model, source)
        return text + _cure(run, state, st, model, ladder)
    return None


def _fill(model, dq, inits: dict, value):
    """The words and `qdq_fill.Fill` where a constant the graph writes sets the range of the pair ending at `dq`
    (`cures/qdq_fill.py`), else None."""
    from cp_debug.bisect.cures.qdq_fill import fill_range

    fmt = _format(inits.get(dq.input[2]) if len(dq.input) > 2 else None)
    params = scale_zero(dq, inits, np.ndim(value)) if value is not None and fmt is not None else None
    if params is None:
        return None
    end = float(np.max(np.abs([(LEVELS[fmt][0] - params[1]) * params[0], (LEVELS[fmt][1] - params[1]) * params[0]])))
    found = fill_range(model, dq, np.asarray(value, np.float64), end)
    return (found.words(end, np.asarray(value, np.float64)), found) if found is not None else None


def _biased(node, producer: dict, inits: dict):
    """The MatMul / Gemm / Conv whose output `node` adds a constant bias to (through the file's Q/DQ pair between
    them), or None: the node a module probe's tensor (its Linear's output, the bias Add's) is computed by, where an
    ONNX probe names the MatMul's own output."""
    if node.op_type != "Add":
        return None

    def constant(x: str) -> bool:  # an initializer, read through its Q/DQ pair and an Identity (a shared weight)
        for _ in range(6):
            p = producer.get(x)
            if x in inits or p is None or p.op_type not in ("DequantizeLinear", "QuantizeLinear", "Identity"):
                break
            x = p.input[0]
        return x in inits

    data = [x for x in node.input if not constant(x)]
    if len(data) != 1 or len(node.input) != 2:
        return None
    p = producer.get(data[0])
    if p is not None and p.op_type == "DequantizeLinear":
        behind = float_behind(producer, data[0])
        p = producer.get(behind) if behind is not None else None
    return p if p is not None and p.op_type in ("MatMul", "Gemm", "Conv") else None


def _set_by(model, source: str, value: np.ndarray, text: str) -> tuple[str, str | None]:
    """`text` with the channels that set `source`'s range and the quantized node computing them where a few stand
    out (`qdq_exclude.dominant_channels`), and that node's name (None: no such node)."""
    from cp_debug.bisect.cures.qdq_exclude import dominant_channels, quantized_writer

    writer = quantized_writer(model, source)
    axis = 1 if value.ndim == 4 else -1  # NCHW's channels; a transformer's features last
    chans = dominant_channels(value, axis) if value.ndim >= 2 else []
    if not chans or len(chans) > 4:
        return text, writer.name if writer is not None else None
    a = np.abs(np.moveaxis(value, axis, 0).reshape(value.shape[axis], -1)).max(axis=1)
    others = float(np.median(np.delete(a, chans)))
    where = f" of {_node(writer)}'s output" if writer is not None else ""
    said = (f" — a range set by channel{'s' * (len(chans) > 1)} {', '.join(map(str, chans))}{where} (|x| max "
            f"{float(a[chans].max()):.3g} against {others:.3g}, the other channels' median)")
    return text + said, writer.name if writer is not None else None


def _cure(run: RunState, state: CandidateState, st, model, ladder: list[list[str]]) -> str:
    """"; " and the cure in the producing tool's terms, tried (`qdq_exclude.py`); where it cannot be run, a warning
    and the cure untried."""
    from cp_debug.bisect.cures.qdq_exclude import ExcludeCure, exclusion_cure, producer

    i = next(k for k, s in enumerate(run.subject.stages) if s.name == st.name)
    try:
        cure = exclusion_cure(run, state, i, model, ladder)
    except Exception as err:  # noqa: BLE001 - the cure is extra; the finding stands without its trial
        nodes = [n for n in ladder[0] if n]
        run.warnings.append(f"{state.label}: leaving {', '.join(nodes)} out of the file's quantizer was not tried: "
                            f"{err}")
        cure = ExcludeCure(tuple(nodes), producer(model)) if nodes else None
    return f"; {cure.text()}" if cure is not None else ""


def _pair_why(run: RunState, state: CandidateState, probe: str, t: str, dq_out: str, node, producer: dict,
              inits: dict, entered: dict) -> tuple[str, str | None, np.ndarray | None] | None:
    """What the Q/DQ pair ending at `dq_out` (the probe's own, or an input of `node`) does to the reference's
    values, with the tensor entering it and the reference's value there where known; None where it does nothing
    worth naming."""
    from onnx import numpy_helper

    dq = producer[dq_out]
    q = producer.get(dq.input[0])
    source = q.input[0] if q is not None and q.op_type == "QuantizeLinear" else None
    if source is None:  # a weight stored quantized (int8 / float8 initializer → DequantizeLinear)
        fmt = _format(inits.get(dq.input[2]) if len(dq.input) > 2 else None)
        fault = scale_fault(dq, inits, None, fmt, paired=False) if fmt and dq.input[0] in inits else None
        if fault is not None:
            return f"the file's {fmt.upper()} weight {dq.input[0]!r} of {_node(node)}: {fault}", None, None
        found = stored_weight(run, state, probe, dq, inits, node) if dq.input[0] in inits and dq_out != t else None
        return (found, None, None) if found is not None else None
    if source in inits:
        value = numpy_helper.to_array(inits[source])
    elif entered.get(source) in run.store:
        value = run.store.get(entered[source])
    else:
        return None
    fmt = _format(inits.get(dq.input[2]) if len(dq.input) > 2 else None)
    value = np.asarray(value, np.float64)
    params = scale_zero(dq, inits, value.ndim)
    if params is None or fmt is None:
        return None
    where = (repr(source) if dq_out == t
             else f"{_node(node)}'s {'weight' if source in inits else 'input'} {source!r}")
    fault = scale_fault(dq, inits, value, fmt, paired=True)
    if fault is not None:
        return f"the file's {fmt.upper()} Q/DQ on {where}: {fault}", source, None
    from cp_debug.bisect.findings.quantized.flat_reader import unheeded

    fill = unheeded(producer, inits, dq_out, value, *params, fmt)  # a fill weighed at nothing, a reader saturated
    found = _range(value, *params, fmt, fill)
    if found is not None:
        return f"the file's {fmt.upper()} Q/DQ on {where} {found}", source, value
    return None


def _range(value: np.ndarray, scale: np.ndarray, zero: np.ndarray, fmt: str, fill: np.ndarray | None = None
           ) -> str | None:
    """What the file's range does to `value` (`scale` and `zero` broadcast against it): clips a share beyond it, or
    rounds most nonzero values to zero. `fill`: values no reader heeds clipped or not (a mask's fill, a saturated
    reader's input: `quantized/flat_reader.py`), no clip."""
    qmin, qmax = LEVELS[fmt]
    lo, hi = (qmin - zero) * scale, (qmax - zero) * scale
    # an integer level's half step past either end rounds to that end as any value inside does: no clip (PaddleOCR's
    # recogniser's [-0.146, 6.07] reached -0.149, an eighth of a step beyond, was "10.82% of them lie beyond")
    edge = 0.0 if fmt == "fp8" else scale * 0.5
    fill = np.zeros(np.shape(value), bool) if fill is None else fill
    beyond = float(np.mean(((value < lo * (1 + 1e-6) - edge) | (value > hi * (1 + 1e-6) + edge)) & ~fill))
    value = value[~fill] if fill.any() and np.size(scale) == 1 else value
    a = np.abs(value)
    # nonzero as the segment's finding counts them (`segment_int8.FP32_EPS`): a value below FP32's epsilon × the range
    # is zero beside the range's values in any sum (a masked softmax's padding weights, 1e-21: g2p-id's BERT)
    nonzero = a > np.maximum(np.abs(lo), np.abs(hi)) * FP32_EPS
    step = scale * (2.0 ** -10 if fmt == "fp8" else 0.5)  # what rounds to zero: half E4M3's subnormal, half a level
    lost = float(np.count_nonzero(nonzero & (a <= step)) / max(np.count_nonzero(nonzero), 1))
    span = f"[{float(np.min(lo)):.3g}, {float(np.max(hi)):.3g}]"
    if beyond > SATURATED:
        return (f"clips the reference's values: its range is {span} and they reach [{float(value.min()):.3g}, "
                f"{float(value.max()):.3g}]: {beyond:.2%} of them lie beyond — a calibration that did not see these "
                "values")
    if lost > LOST:
        return (f"rounds {lost:.0%} of the reference's nonzero values to zero: its range is {span} against their "
                f"median |x| {float(np.median(a[nonzero])):.3g}")
    return None


def _node(node) -> str:
    return f"{node.op_type} {node.name!r}"
