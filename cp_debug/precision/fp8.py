"""FP8 (E4M3) post-training quantization to explicit Q/DQ, written the way NVIDIA ModelOpt writes its FP8 ONNX.

ModelOpt's FP8 graph is standard ONNX (opset 19+): QuantizeLinear / DequantizeLinear with FLOAT8E4M3FN zero points
and `saturate=1`, per-tensor scales `amax / 448` (E4M3's largest finite value), max calibration. Weights are folded
to float8 initializers read through a DequantizeLinear; each Conv / Gemm / MatMul activation input gets a Q/DQ pair
at its calibrated max; a Softmax output (in [0, 1]) gets a fixed scale of 1/448. Biases stay float. That is ModelOpt's
torch quantization with `FP8_DEFAULT_CFG` (E4M3 weights and inputs, `axis: None`, algorithm "max") exported to ONNX;
its ONNX-level PTQ (`modelopt.onnx.quantization`, mode fp8) writes otherwise — weights per channel, entropy
calibration by default, residual Adds quantized too, float16 elsewhere at opset 21 — and is not what this writes.
What TensorRT builds from such a file runs those layers in FP8 with float32 accumulation; ONNX Runtime's CPU provider
computes the same numbers as float32 arithmetic on the E4M3-rounded values
(`backends/ort/ort_precision.FP8_ORT_OPT_LEVEL`:
the session setting it needs).

E4M3 keeps 3 mantissa bits: a value in its normal range (amax · 2^-6 / 448 ≈ amax · 2^-14.8 up to amax) is rounded
to within 2^-4 of itself, subnormals reach amax · 2^-17.8 and smaller values flush to zero: its error is a float
format's, relative, not INT8's 127 levels (`compare/noise.py`).

Names: as for INT8 (`precision/int8.py`), a tensor T that feeds Q → DQ is compared at the DequantizeLinear output,
the value its consumers read; `tensor_map` says where every tensor of the original graph is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from cp_debug.errors import BadInputError
from cp_debug.precision.int8 import QuantizedModel, check_calib_feeds

if TYPE_CHECKING:  # pragma: no cover
    import onnx

E4M3_MAX = 448.0  # the largest finite FLOAT8E4M3FN value: ModelOpt's scale is amax / 448
FP8_OPSET = 19  # QuantizeLinear / DequantizeLinear take float8 (and `saturate`) from opset 19
COMPUTE_OPS = ("Conv", "Gemm", "MatMul")
METHOD = "max"  # ModelOpt's FP8 calibration: the largest |x| over the calibration feeds
_TINY = float(np.finfo(np.float32).tiny)  # an all-zero tensor's amax: any positive scale represents it exactly
# a weight whose per-tensor scale flushes this share of its nonzero values to zero is named in the precision report:
# no weight of tests/zoo's ResNet, MobileNetV3-small, ViT, DETR-like and text models reaches it; an input channel
# 10^6× the conv's other weights flushes all of them, 94% of the tensor (tests/backends/test_ort_fp8.py)
FLUSH_NOTE = 0.01


def quantize_fp8(model: "onnx.ModelProto", calib_feeds: Sequence[dict[str, np.ndarray]], *,
                 exclude_nodes: Sequence[str] = (), per_channel_nodes: Sequence[str] = (),
                 amax: dict[str, float] | None = None) -> QuantizedModel:
    """`model` with ModelOpt-style FP8 Q/DQ (module docstring), activations calibrated by max over `calib_feeds`.

    The cure ladder's variants (bisect/findings/segment_fp8.py): `exclude_nodes` left out of FP8 (their inputs read in
    float,
    as ModelOpt's `nodes_to_exclude`); `per_channel_nodes` read their weight per output channel (one scale per
    channel, as ModelOpt's ONNX path quantizes FP8 weights); `amax`: calibrated ranges given (a run's own), used
    for the tensors it names instead of calibrating them on `calib_feeds`.

    A model below opset 19 is converted to opset 19 first (onnx's version converter); one that cannot be is one
    BadInputError line."""
    from cp_debug.graph.model import cleanup, export_like
    from cp_debug.graph.weight_store import import_graph
    from cp_debug.precision.held import file_precision

    feeds = list(calib_feeds or ())
    if not feeds:
        raise BadInputError("FP8 quantization needs calibration inputs: give at least one feed (--calib FILE.npz)")
    if (held := file_precision(model)) in ("int8", "fp8"):  # as ModelOpt, which leaves a Q/DQ graph as it is
        raise BadInputError(f"the model is already quantized (it holds {held} QuantizeLinear/DequantizeLinear): run "
                            "it as it is (ort, not ort-*-fp8); cp_debug never quantizes a quantized graph again")
    check_calib_feeds(model, feeds)
    model = at_fp8_opset(model)
    original = [t for n in model.graph.node for t in n.output if t] + [i.name for i in model.graph.input]
    graph = import_graph(model)
    weights, activations = _quantized_inputs(graph, set(exclude_nodes))
    given = {t: float(a) for t, a in (amax or {}).items() if t in activations}
    softmax_fed = {t for t in activations if _producer(graph, t) == "Softmax"}
    found = calibrate_max(model, [t for t in activations if t not in softmax_fed and t not in given], feeds)
    found.update({t: 1.0 for t in softmax_fed})  # ModelOpt's fixed 1/448 after a Softmax
    found.update(given)
    tensors = graph.tensors()
    tmap = {n: n for n in original}
    for name in activations:
        dq = _qdq(graph, tensors[name], found[name])
        for node in [c for c in tensors[name].outputs if c.op in COMPUTE_OPS and c.name not in exclude_nodes]:
            node.inputs = [dq if t is tensors[name] else t for t in node.inputs]
        tmap[name] = dq.name
    flushed = {}
    for const, readers in weights.values():
        axis = _channel_axis(readers, const) if any(n.name in per_channel_nodes for n in readers) else None
        dq, share = _weight_dq(graph, const, axis)
        if share >= FLUSH_NOTE:
            flushed[const.name] = share
        for node in readers:
            node.inputs = [dq if t is const else t for t in node.inputs]
    cleanup(graph).toposort()
    qmodel = export_like(graph, model)
    qmodel.ir_version = max(qmodel.ir_version, 9)  # float8 tensors need IR 9
    return QuantizedModel(qmodel, tmap, {t: float(a) for t, a in found.items()}, METHOD, flushed)


def calibrate_max(model: "onnx.ModelProto", names: Sequence[str], feeds: Sequence[dict[str, np.ndarray]],
                  seen: "Callable[[str, np.ndarray], None] | None" = None) -> dict[str, float]:
    """The largest |x| of each named tensor over `feeds`: one FP32 session of `model` with them exposed. `seen(name,
    |x|)` is shown each tensor's magnitudes of each feed (NVFP4 counts its blocks there)."""
    from cp_debug.graph.model import expose_outputs
    from cp_debug.graph.session import cast_feed, point_at_weights, session_source
    from cp_debug.ort_sessions import open_session, session_options

    names = list(dict.fromkeys(names))
    if not names:
        return {}
    inputs = {i.name for i in model.graph.input}
    exposed = expose_outputs(model, [n for n in names if n not in inputs])
    so = session_options()
    point_at_weights(so, exposed)
    with session_source(exposed) as src:
        sess = open_session(src, so)
    amax = dict.fromkeys(names, 0.0)
    computed = [n for n in names if n not in inputs]
    for feed in feeds:
        fed = cast_feed(exposed, feed)
        values = dict(zip(computed, sess.run(computed, fed))) if computed else {}
        values.update({n: fed[n] for n in names if n in inputs})
        for n in names:
            v = np.abs(np.asarray(values[n], np.float32))
            amax[n] = max(amax[n], float(v.max()) if v.size else 0.0)
            if seen is not None:
                seen(n, v)
    return amax


def to_e4m3(values: np.ndarray, scale) -> np.ndarray:
    """`values / scale` (a number, or scales broadcast against `values`) rounded to FLOAT8E4M3FN (nearest even)
    with saturation to ±448, as QuantizeLinear with `saturate=1` does (ml_dtypes' cast alone makes NaN of anything
    beyond 448)."""
    import ml_dtypes

    scaled = np.clip(np.asarray(values, np.float32) / np.asarray(scale, np.float32), -E4M3_MAX, E4M3_MAX)
    return scaled.astype(ml_dtypes.float8_e4m3fn)


def at_fp8_opset(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """`model` at the opset of float8 QuantizeLinear (19), converted where it is older."""
    from cp_debug.graph.model import at_opset

    return at_opset(model, FP8_OPSET, "FP8 Q/DQ")


def _quantized_inputs(graph, exclude: set[str]) -> tuple[dict, list[str]]:
    """The Conv / Gemm / MatMul inputs to quantize, but `exclude`'s: float weights (name → (constant, its readers))
    and activations (computed or graph-input tensors, in graph order). A bias (a Conv's or Gemm's third input) stays
    float."""
    import onnx_graphsurgeon as gs

    weights: dict = {}
    activations: list[str] = []
    for node in graph.nodes:
        if node.op not in COMPUTE_OPS or node.name in exclude:
            continue
        for t in node.inputs[:2]:
            if isinstance(t, gs.Constant):
                if np.asarray(t.values).dtype == np.float32:
                    weights.setdefault(t.name, (t, []))[1].append(node)
            elif isinstance(t, gs.Variable) and t.name not in activations and (t.dtype in (None, np.float32)):
                activations.append(t.name)
    return weights, activations


def _producer(graph, name: str) -> str | None:
    t = graph.tensors()[name]
    return t.inputs[0].op if t.inputs else None


def _qdq(graph, tensor, amax: float):
    """tensor → QuantizeLinear (E4M3, saturate=1) → DequantizeLinear at scale amax / 448; the DQ output."""
    import ml_dtypes
    import onnx_graphsurgeon as gs

    scale = gs.Constant(f"{tensor.name}_fp8_scale", np.array(max(amax, _TINY) / E4M3_MAX, np.float32))
    zero = gs.Constant(f"{tensor.name}_fp8_zero_point", np.zeros((), ml_dtypes.float8_e4m3fn))
    q = gs.Variable(f"{tensor.name}_fp8", dtype=ml_dtypes.float8_e4m3fn, shape=tensor.shape)
    dq = gs.Variable(f"{tensor.name}_fp8_dq", dtype=np.float32, shape=tensor.shape)
    graph.nodes.append(gs.Node("QuantizeLinear", f"{tensor.name}_QuantizeLinear", {"saturate": 1},
                               [tensor, scale, zero], [q]))
    graph.nodes.append(gs.Node("DequantizeLinear", f"{tensor.name}_DequantizeLinear", {}, [q, scale, zero], [dq]))
    return dq


def _channel_axis(readers, const) -> int | None:
    """The output-channel axis of weight `const` as its first reader reads it (Conv: 0; Gemm: 0 with transB, else
    1; MatMul's second input: its last), None where it is no such weight (a MatMul's first input)."""
    node = readers[0]
    if node.op == "Conv":
        return 0
    if node.op == "Gemm" and node.inputs[1] is const:
        return 0 if node.attrs.get("transB", 0) else 1
    if node.op == "MatMul" and node.inputs[1] is const and np.ndim(const.values) == 2:
        return 1
    return None


def _weight_dq(graph, const, axis: int | None = None) -> tuple:
    """A float32 weight folded to an E4M3 initializer at scale max|w| / 448 (per tensor; per slice along `axis`
    where given), read through a DequantizeLinear; and the share of its nonzero values that scale rounds to zero."""
    import ml_dtypes
    import onnx_graphsurgeon as gs

    w = np.asarray(const.values, np.float32)
    if axis is None:
        s = np.float32(max(float(np.abs(w).max()) if w.size else 0.0, _TINY) / E4M3_MAX)
        e4m3 = to_e4m3(w, s)
        s, zeros, attrs = np.array(s, np.float32), np.zeros((), ml_dtypes.float8_e4m3fn), {}
    else:
        top = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
        s = (np.maximum(top, _TINY) / E4M3_MAX).astype(np.float32)
        shape = [1] * w.ndim
        shape[axis] = -1
        e4m3 = to_e4m3(w, s.reshape(shape))
        zeros, attrs = np.zeros(s.shape, ml_dtypes.float8_e4m3fn), {"axis": axis}
    scale = gs.Constant(f"{const.name}_fp8_scale", s)
    zero = gs.Constant(f"{const.name}_fp8_zero_point", zeros)
    nonzero = w != 0
    share = float(np.count_nonzero(nonzero & (e4m3.astype(np.float32) == 0)) / max(np.count_nonzero(nonzero), 1))
    folded = gs.Constant(f"{const.name}_fp8", e4m3)
    dq = gs.Variable(f"{const.name}_fp8_dq", dtype=np.float32, shape=list(w.shape))
    graph.nodes.append(gs.Node("DequantizeLinear", f"{const.name}_DequantizeLinear", attrs, [folded, scale, zero],
                               [dq]))
    return dq, share


SUBNORMAL_STEP = 2.0 ** -9  # E4M3's smallest subnormal, in units of the scale: half of it and less round to zero
NORMAL_MIN = 2.0 ** -6  # E4M3's smallest normal, in units of the scale: below it fewer than 3 mantissa bits remain


def e4m3_range(values: np.ndarray, amax: float) -> tuple[float, float, float]:
    """How `values` fit E4M3 at per-tensor range ±`amax` (scale amax / 448): the shares of their nonzero values that
    round to zero (|x| ≤ half the smallest subnormal step) and that fall below the normal range (fewer than 3
    mantissa bits), and the share of all values beyond ±amax (saturated)."""
    a = np.abs(np.asarray(values, np.float64)).ravel()
    if not a.size or amax <= 0:
        return 0.0, 0.0, 0.0
    scale = amax / E4M3_MAX
    nonzero = a[a > 0]
    n = max(nonzero.size, 1)
    flushed = float(np.count_nonzero(nonzero <= scale * SUBNORMAL_STEP / 2) / n)
    subnormal = float(np.count_nonzero(nonzero < scale * NORMAL_MIN) / n)
    return flushed, subnormal, float(np.count_nonzero(a > amax) / a.size)
