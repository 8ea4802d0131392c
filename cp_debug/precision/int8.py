"""INT8 post-training quantization to explicit Q/DQ (what TensorRT consumes), through ONNX Runtime's quantizer.

Activations and weights are symmetric int8 (TensorRT supports symmetric quantization only), weights per channel,
biases left in float (TensorRT rejects int32 bias DequantizeLinear), fp32 weights with a Q/DQ pair and one
dedicated Q/DQ pair per consumer (TensorRT's documented Q/DQ placement).

Names: the quantizer renames. When a tensor T is followed by QuantizeLinear → DequantizeLinear, the consumers read
the DequantizeLinear output, so that is what is compared. With asymmetric activations the quantizer also drops a
ReLU that a QuantizeLinear follows and leaves the ReLU's output name on the conv's pre-ReLU output: the tensor
of that name then holds negative values, and only the DequantizeLinear output equals the ReLU's. `tensor_map`
carries the answer for every tensor of the original graph.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from cp_debug.errors import BadInputError
from cp_debug.graph.model import at_opset, fold_initializer_identities
from cp_debug.graph.onnx_files import fits_inline, holds_stored, keep, save_onnx
from cp_debug.graph.qdq_pair import INITIALIZER, QdqIndex, QdqPair

if TYPE_CHECKING:  # pragma: no cover
    import onnx

METHODS = ("minmax", "entropy", "percentile")
DEFAULT_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True)
class QuantizedModel:
    """The Q/DQ model and how to read it.

    tensor_map: original tensor name → tensor to compare in `model` (absent: the quantizer removed it).
    activation_amax: original tensor name → calibrated amax (the largest magnitude int8 represents,
        scale·127 for symmetric int8): values beyond it saturate.
    weights_flushed (FP8, `precision/fp8.py`): weight → the share of its nonzero values that its per-tensor scale
        rounds to zero, where that is `fp8.FLUSH_NOTE` or more; (NVFP4, `precision/block_quant.py`) weight or
        activation → the share of its nonzero blocks whose block scale underflows.
    """

    model: "onnx.ModelProto"
    tensor_map: dict[str, str] = field(default_factory=dict)
    activation_amax: dict[str, float] = field(default_factory=dict)
    method: str = "minmax"
    weights_flushed: dict[str, float] = field(default_factory=dict)

    def mapped(self, name: str) -> str | None:
        return self.tensor_map.get(name)


PER_CHANNEL_OPSET = 13  # QuantizeLinear / DequantizeLinear take `axis` (per-channel scales) from opset 13


def quantize_int8(model: "onnx.ModelProto", calib_feeds: Sequence[dict[str, np.ndarray]], *,
                  exclude_nodes: Iterable[str] = (), op_types: Sequence[str] | None = DEFAULT_OP_TYPES,
                  per_channel: bool = True, method: str = "minmax", activation_symmetric: bool = True,
                  trt_compatible: bool = True) -> QuantizedModel:
    """Calibrate on `calib_feeds` and insert Q/DQ (ORT `quantize_static`, QDQ format). Temp files are removed.

    op_types: op types to quantize (None: every op type ORT can quantize).
    activation_symmetric: False gives ORT's uint8 asymmetric activations (not TensorRT-compatible; there for
        comparison: it is the mode in which ORT drops ReLUs).
    trt_compatible: float bias, fp32 weights with a Q/DQ pair, dedicated Q/DQ pairs.
    """
    import tempfile
    from pathlib import Path

    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    if method not in METHODS:
        raise BadInputError(f"unknown INT8 calibration method {method!r}: use one of {', '.join(METHODS)}")
    feeds = list(calib_feeds or ())
    if not feeds:
        raise BadInputError("INT8 quantization needs calibration inputs: give at least one feed (--calib FILE.npz)")
    check_calib_feeds(model, feeds)
    from cp_debug.precision.half_storage import holds_half_constants, widen_half

    if holds_half_constants(model):  # a user's float16 file: ORT's calibrator feeds float32 to its float16 graph and
        model = widen_half(model)  # stops (exit 70 before); its float32 twin quantized, what the file computes in FP32
    node_names = {n.name for n in model.graph.node}
    exclude = list(dict.fromkeys(exclude_nodes))
    unknown = [n for n in exclude if n not in node_names]
    if unknown:
        raise BadInputError(f"INT8 exclude list names node(s) not in the graph: {', '.join(map(repr, unknown[:5]))}")

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

        def rewind(self):
            self._it = iter(feeds)

    extra = {"ActivationSymmetric": bool(activation_symmetric), "WeightSymmetric": True}
    if trt_compatible:
        extra.update({"QuantizeBias": False, "AddQDQPairToWeight": True, "DedicatedQDQPair": True})
    calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}[method]
    original = [t for n in model.graph.node for t in n.output if t] + [i.name for i in model.graph.input]
    if op_types and not any(n.op_type in op_types for n in model.graph.node):
        # nothing to quantize (a Relu-only segment, say): the quantizer would return the graph as it is, after
        # building a calibration session for nothing (whose unused initializer ORT then warns about)
        tmap, amax = read_qdq(model, original)
        return QuantizedModel(model, tmap, amax, method)
    model = own_shared_biases(fold_initializer_identities(model))  # the exporter's do the first; a user's ONNX may not
    if per_channel:  # ORT's quantizer writes a per-channel QuantizeLinear's `axis` at any opset; it has one from 13
        model = at_opset(model, PER_CHANNEL_OPSET, "per-channel INT8 Q/DQ")  # (ddddocr's opset-11 YOLO: exit 2)
    big = not fits_inline(model) or holds_stored(model)  # past 2 GiB: files with external data both ways
    with tempfile.TemporaryDirectory(prefix="cpdebug_int8_") as tmp, _quiet_quantizer():
        src = Path(tmp) / "model.onnx"
        dst = Path(tmp) / "model_int8.onnx"
        save_onnx(model, src, external=big)
        quantize_static(
            str(src), str(dst), _Reader(), quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types) if op_types else None, per_channel=per_channel,
            activation_type=QuantType.QInt8 if activation_symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8, nodes_to_exclude=exclude, calibrate_method=calib,
            use_external_data_format=big, extra_options=extra, calibration_providers=["CPUExecutionProvider"],
        )
        qmodel = keep(onnx.load(str(dst), load_external_data=True))  # past 2 GiB: into the weights folder
    out_of_int8(qmodel, set(exclude))
    tmap, amax = read_qdq(qmodel, original)
    return QuantizedModel(qmodel, tmap, amax, method)


def out_of_int8(qmodel: "onnx.ModelProto", excluded: set[str]) -> None:
    """The excluded nodes read float: ORT's `nodes_to_exclude` leaves a node reading a tensor's Q/DQ pair that a
    quantized reader of the same tensor asked for (MTCNN's PNet: `conv4_1` left out still read `prelu3`'s INT8
    rounding through `conv4_2`'s pair), so "left out of INT8" was not out of it; as a user's file's exclusion
    (`bisect/cures/qdq_removal.py`) does, each such input is read before its pair, and a pair no node reads any more
    is dropped (in place)."""
    from cp_debug.graph.qdq_pair import float_behind

    if not excluded:
        return
    g = qmodel.graph
    writer = {o: n for n in g.node for o in n.output}
    for n in g.node:
        if n.name in excluded:
            for k, t in enumerate(n.input):
                if (src := float_behind(writer, t)) is not None:
                    n.input[k] = src
    gone: set[str] = set()
    for _ in range(2):  # a DequantizeLinear no one reads, then its QuantizeLinear
        read = {t for n in g.node for t in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in read for o in n.output)]
        for n in dead:
            gone.update(n.input[1:])
            g.node.remove(n)
    read = {t for n in g.node for t in n.input} | {o.name for o in g.output}
    for i in [i for i in g.initializer if i.name in gone - read]:  # their scales and zero points
        g.initializer.remove(i)


def own_shared_biases(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """A bias initializer read by several Conv / ConvTranspose / Gemm nodes copied, one for each reader, under a
    name no tensor has. ORT's quantizer copies a shared bias itself as `name` + a number, checked against the
    initializers only: basic-pitch's tf2onnx file shares the bias `…conv1d_25` among 16 convs and one of them
    writes `…conv1d_252`, so the quantized file defines that name twice and ONNX Runtime cannot load it."""
    import onnx

    readers: dict[str, list] = {}
    for n in model.graph.node:
        if n.op_type in ("Conv", "ConvTranspose", "Gemm") and len(n.input) > 2 and n.input[2]:
            readers.setdefault(n.input[2], []).append(n)
    inits = {i.name: i for i in model.graph.initializer}
    shared = {b: ns for b, ns in readers.items() if len(ns) > 1 and b in inits}
    if not shared:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    taken = {t for n in out.graph.node for t in (*n.input, *n.output)} | set(inits) | {
        i.name for i in out.graph.input}
    nodes = {id(n): k for k, n in enumerate(model.graph.node)}
    for bias, ns in shared.items():
        for j, n in enumerate(ns[1:], 1):
            name = f"{bias}__own{j}"
            while name in taken:
                name += "_"
            taken.add(name)
            copy = out.graph.initializer.add()
            copy.CopyFrom(inits[bias])
            copy.name = name
            out.graph.node[nodes[id(n)]].input[2] = name
    return out


def check_calib_feeds(model: "onnx.ModelProto", feeds: Sequence[dict[str, np.ndarray]]) -> None:
    """A BadInputError, in one line, where a calibration feed's names are not the model's inputs (INT8 and FP8)."""
    input_names = {i.name for i in model.graph.input} - {i.name for i in model.graph.initializer}
    for k, feed in enumerate(feeds):
        missing = sorted(input_names - set(feed))
        extra = sorted(set(feed) - input_names)
        if missing or extra:
            raise BadInputError(
                f"calibration feed {k} does not match the model's inputs {sorted(input_names)}: "
                f"missing {missing}, unknown {extra}"
            )


def pair_scale(model: "onnx.ModelProto", node) -> float | None:
    """The scale of a QuantizeLinear / DequantizeLinear `node` of `model` where it is one initializer value (a
    per-tensor pair, `graph/qdq_pair.py`); None per channel, or where its scale is no initializer."""
    pair = QdqIndex.of(model).pair(node) if node is not None else None
    return pair.step if pair is not None and pair.scale_from == INITIALIZER else None


@dataclass(frozen=True)
class BadScalePair:
    """A Q/DQ pair on an activation whose scale is no number, or one set by a mask's fill (`bad_scale_pairs`): the
    tensor it quantizes, the node that writes it (None: a graph input; "" an unnamed one), the kind ("inf", "NaN",
    "0", "fill"), its DequantizeLinears' outputs and the nodes that read them, each in graph order."""

    source: str
    writer: str | None
    kind: str
    dequantized: tuple[str, ...]
    readers: tuple[str, ...]
    scale: float = float("nan")  # the largest finite |scale| of the pair (a fill's: the figure its words say)


def bad_scale_pairs(model: "onnx.ModelProto") -> list[BadScalePair]:
    """The pairs of `model` on an activation (not a weight) whose scale initializer holds an inf, a NaN or a 0, in
    graph order: every value such a pair dequantizes is NaN or 0 (a masked attention's -inf fill calibrated into
    its scores); or a finite scale a mask's fill set (`graph/masks.fill_scale`, kind "fill": finfo.min calibrated
    into the scores, every real score rounds to the zero point). A scale that is no initializer is not read."""
    from cp_debug.graph.masks import fill_scale

    index = QdqIndex.of(model)
    nodes = list(model.graph.node)
    pairs = []
    for q in nodes:
        if q.op_type != "QuantizeLinear" or q.input[0] in index.inits:
            continue
        pair = index.pair(q)
        if pair is None or pair.scale_from != INITIALIZER:
            continue
        s = np.asarray(pair.scale, np.float64)
        if np.all(np.isfinite(s) & (s != 0)) and not fill_scale(s):
            continue
        kind = "inf" if np.isinf(s).any() else "NaN" if np.isnan(s).any() else "0" if (s == 0).any() else "fill"
        dqs = tuple(d.output[0] for d in pair.dequantize)
        reading = sorted({index.position[id(n)] for d in dqs for n in index.readers.get(d, ())})  # graph order
        writer = index.writer.get(q.input[0])
        pairs.append(BadScalePair(q.input[0], writer.name if writer is not None else None, kind, dqs,
                                  tuple(nodes[i].name for i in reading),
                                  float(np.max(np.abs(s[np.isfinite(s)]), initial=0.0))))
    return pairs


def read_qdq(qmodel: "onnx.ModelProto", names: Iterable[str]) -> tuple[dict[str, str], dict[str, float]]:
    """(tensor_map, activation_amax) for the given original tensor names.

    tensor_map[name]: the DequantizeLinear output where a QuantizeLinear → DequantizeLinear pair alone reads the
    tensor, else the name itself (a tensor that several nodes read, an Add unquantized beside a conv's pair, holds
    no one dequantized value): the point a user's file of the same quantization is read at (`probes/qdq_pairs`), so
    the built-in and the file read one value; names no longer in the quantized graph are left out.
    activation_amax[name]: the amax of a QuantizeLinear that quantizes it (for a renamed graph output, or a
    dequantized tensor, the one in front of its DequantizeLinear).
    """
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(qmodel)
    tensors = graph.tensors()
    index = QdqIndex.of(qmodel)
    tmap: dict[str, str] = {}
    amax: dict[str, float] = {}
    for name in names:
        t = tensors.get(name)
        if t is None:
            continue
        tmap[name] = name
        for q in t.outputs:
            if q.op != "QuantizeLinear":
                continue
            dqs = [c for c in q.outputs[0].outputs if c.op == "DequantizeLinear"]
            if dqs:
                if len(t.outputs) == 1 and len(q.outputs[0].outputs) == 1:
                    tmap[name] = dqs[0].outputs[0].name
                a = _q_amax(index.pair(index.writer.get(q.outputs[0].name)))
                if a is not None:
                    amax[name] = a
                break
        else:  # the name itself may be a DequantizeLinear output (ORT renames a quantized graph output this way)
            if t.inputs and t.inputs[0].op == "DequantizeLinear":
                src = t.inputs[0].inputs[0]
                if src.inputs and src.inputs[0].op == "QuantizeLinear":
                    a = _q_amax(index.pair(index.writer.get(src.name)))
                    if a is not None:
                        amax[name] = a
    return tmap, amax


def _q_amax(pair: QdqPair | None) -> float | None:
    """amax of one per-tensor QuantizeLinear's pair (its scale an initializer): 127·scale for symmetric int8 (or
    where the QuantizeLinear gives no zero point), else the larger end of its range."""
    if pair is None or pair.quantize is None or pair.scale_from != INITIALIZER or not pair.per_tensor:
        return None
    if pair.zero_from is None or pair.qtype == "int8" and float(pair.zero.reshape(-1)[0]) == 0:
        return 127.0 * pair.step
    ends = pair.ends
    return float(max(abs(ends[0]), abs(ends[1]))) if ends is not None else None


@contextlib.contextmanager
def _quiet_quantizer():
    """ORT's quantizer logs 'please consider pre-processing' on the root logger; keep the terminal clean."""

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "pre-processing" not in record.getMessage()

    root = logging.getLogger()
    f = _Drop()
    root.addFilter(f)
    try:
        yield
    finally:
        root.removeFilter(f)


FLOAT32_EPS = float(np.finfo(np.float32).eps)  # ONNX Runtime's ClipQuantFusion compares bounds within it, absolutely


def clips_ort_drops(model: "onnx.ModelProto") -> dict[str, float]:
    """Clip nodes ONNX Runtime's ClipQuantFusion removes wrongly from this Q/DQ graph, with their QuantizeLinear's
    lower bound (`clip_drops`, less the Clip's minimum)."""
    return {clip: q_lo for clip, (q_lo, _) in clip_drops(model).items()}


def clip_drops(model: "onnx.ModelProto") -> dict[str, tuple[float, float]]:
    """Clip nodes ONNX Runtime's ClipQuantFusion removes wrongly from this Q/DQ graph, with their QuantizeLinear's
    lower bound and the Clip's minimum: the rule (ORT's rewrite rule "ClipQuantRewrite") drops a Clip whose bounds
    the quantizer's range meets within float32's epsilon, compared in absolute terms, so where the range's low end
    lies below the Clip's minimum by less than 1.19e-7 (an int8 range of ±1.9e-8: activations of ~1e-8, a random-init
    or badly scaled layer) the Clip goes and its negatives pass — a ReLU6 of MobileNetV2 measured 0.052 at
    ORT_DISABLE_ALL and 0.357 at ORT_ENABLE_ALL (issue 84). onnxruntime 1.32 leaves the Clip where the session is
    made with `disabled_optimizers=["ClipQuantRewrite"]` (the rule's own name; "ClipQuantFusion" changes nothing)."""
    index = QdqIndex.of(model)
    out = {}
    for clip in (n for n in model.graph.node if n.op_type == "Clip"):
        lo = index.constant(clip.input[1]) if len(clip.input) > 1 and clip.input[1] else None
        lo = float(lo[0]) if lo is not None else next((a.f for a in clip.attribute if a.name == "min"), None)
        for q in (r for r in index.readers.get(clip.output[0], []) if r.op_type == "QuantizeLinear"):
            pair = index.pair(q)
            ends = pair.ends if pair is not None else None
            if lo is not None and ends is not None and lo - FLOAT32_EPS <= ends[0] < lo:
                out[clip.name] = (ends[0], lo)
    return out
