"""What precision ONNX Runtime really ran: facts read off its optimised graph, and the precision report.

ORT dumps the graph it optimised for a session; the compute nodes' input dtypes (propagated through ORT's
contrib ops, which have no shape inference) and, on CUDA, the node-to-EP assignment say whether FP16 / INT8
kernels ran or the provider wrapped nodes in Casts. Segments of one graph (lockstep) merge their facts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields, replace
from functools import partial
from typing import TYPE_CHECKING, Mapping, Sequence

from cp_debug.backends.base import PrecisionReport
from cp_debug.backends.graph_loader import PrecisionTransform, vanished_note
from cp_debug.backends.spec import BackendSpec

if TYPE_CHECKING:  # pragma: no cover
    import onnx

# Nodes that do the arithmetic precision is about (ONNX ops plus ORT's fused/contrib/quantized forms).
COMPUTE_OPS = frozenset({
    "Conv", "ConvTranspose", "MatMul", "Gemm", "FusedConv", "FusedGemm", "FusedMatMul", "NhwcConv", "NhwcFusedConv",
    "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
    "QGemm", "DynamicQuantizeLSTM",  # ORT's fused Q/DQ Gemm and its dynamic INT8 LSTM: int8 kernels too
    "Attention", "MultiHeadAttention", "QAttention", "Einsum",
})
# Ops that move or reshape data: their dtype says nothing about arithmetic precision.
_NOT_ARITHMETIC = frozenset({
    "Cast", "CastLike", "QuantizeLinear", "DequantizeLinear", "Constant", "ConstantOfShape", "Identity", "Shape",
    "Size", "Reshape", "Transpose", "Slice", "Concat", "Squeeze", "Unsqueeze", "Flatten", "Gather", "GatherND",
    "GatherElements", "Expand", "Split", "Tile", "Pad", "ReorderInput", "ReorderOutput", "ScatterND",
    "ScatterElements", "DepthToSpace", "SpaceToDepth", "NonZero", "TopK",
})
_INT_OUT_OPS = {"Shape": 7, "Size": 7, "NonZero": 7, "ArgMax": 7, "ArgMin": 7, "MatMulInteger": 6, "ConvInteger": 6,
                "DynamicQuantizeLinear": 2}
_DTYPE_NAMES = {1: "float32", 10: "float16", 16: "bfloat16", 11: "float64", 3: "int8", 2: "uint8", 6: "int32",
                7: "int64"}
_FLOAT8 = frozenset({17, 18, 19, 20})  # FLOAT8E4M3FN, FLOAT8E4M3FNUZ, FLOAT8E5M2, FLOAT8E5M2FNUZ

# The graph optimisation level of a session over float8 Q/DQ (`ort-*-fp8`, a deployed FP8 file): measured with
# onnxruntime 1.32 on the CPU over the ModelOpt-style graph of a 3-Conv + Linear CNN (tests/backends/
# test_ort_fp8.py), rel. RMS error against FP32: ORT_DISABLE_ALL 0.086, equal to 2e-8 to FP8 rounding emulated in
# torch; ORT_ENABLE_BASIC close (bit for bit on one input, 0.006 apart on another: its fusions round a few values
# to the neighbouring E4M3 level); ORT_ENABLE_EXTENDED and ORT_ENABLE_ALL (ORT's default) 1.33. The extended level's
# optimised graph has no ReLU left in front of a QuantizeLinear: ORT removes a Relu that a QuantizeLinear follows, as
# an INT8 range whose zero point is its lowest level clips negatives, but float8's range is signed, so the negatives
# the ReLU removed go through. Off altogether (the one level that leaves the graph exactly as written, and that the
# team measured first); the report's settings say so.
FP8_ORT_OPT_LEVEL = "disable"
FP8_ORT_NOTE = ("ONNX Runtime's graph optimisations off for float8 Q/DQ (ORT_DISABLE_ALL): at its default level "
                "onnxruntime 1.32 drops the ReLUs in front of float8 QuantizeLinears (rel. RMS error 1.3 against 0.086 "
                "on a CNN)")


@dataclass(frozen=True)
class GraphFacts:
    """What ORT's optimised graph of one session (or of a graph's segments, merged) holds.

    `error` says why the optimised graph could not be read; the precision is then unverified.
    """

    compute_dtypes: Mapping[str, int] = field(default_factory=dict)  # compute nodes by their data input's dtype
    compute_ops: tuple[str, ...] = ()
    other_float_dtypes: Mapping[str, int] = field(default_factory=dict)  # other float arithmetic, by dtype
    casts: int = 0
    cpu_fallback: tuple[str, ...] | None = None  # compute nodes ORT put on the CPU EP; None: ORT cannot say
    error: str | None = None
    fp8_fed: int = 0  # compute nodes whose data input is dequantized from float8 (FP8 Q/DQ in front of them)
    block_fed: int = 0  # compute nodes reading an NVFP4 / MXFP8 fake quant (`precision/block_quant.py`) and its weight
    # the optimised graph's nodes that compute the graph's own outputs (`ort_unprobed.live_nodes`), where asked for
    nodes: tuple = field(default=(), compare=False, repr=False)
    int8_fed: int = 0  # float compute nodes whose data input is dequantized from int8 / uint8 (INT8's values)
    half_fed: int = 0  # float32 compute nodes whose data input is Cast up from float16 (ORT CPU's float16, as it runs)
    note: str | None = None  # how the session was made, where not as asked (said in the precision line's notes)


_CAST_BACK = "FusedBack_"  # ORT CPU's float16 initializer Cast up at load (insert_cast_transformer.cc)
HALF_ENV = "CPDEBUG_ORT_CPU_HALF"  # "native": ORT's CPU float16 as it is; default "emulated" (see ort_runner)


def precision_report_from_facts(spec: BackendSpec, facts: GraphFacts, transform: PrecisionTransform,
                                missing: Sequence[str] = (), probe_effect: str | None = None) -> PrecisionReport:
    """What precision ORT really ran, from the facts read off its optimised graph (one session's or merged)."""
    req = spec.precision
    notes: list[str] = [facts.note] if facts.note else []
    if facts.error:
        notes.append(f"could not read ORT's optimised graph ({facts.error}): precision unverified")
        return PrecisionReport(req, "unknown", tuple(notes))
    by = facts.compute_dtypes
    where = "ORT CPU" if spec.device == "cpu" else "ORT CUDA"
    ops = "/".join(sorted(facts.compute_ops)) or "compute"
    if not by and req in ("fp16", "fp32", "tf32"):  # no Conv/MatMul/Gemm: judge by the elementwise float ops
        by, ops = facts.other_float_dtypes, "float arithmetic"
    total = sum(by.values())
    if total == 0:
        notes.append("the optimised graph has no Conv/MatMul/Gemm nodes: nothing to verify")
        effective = req
    elif req == "fp16":
        effective = _fp16_effective(facts, by, f"{where} ran", ops, transform, notes)
    elif req in _QUANTIZED_EFFECTIVE:
        effective = _QUANTIZED_EFFECTIVE[req](facts, by, transform, f"{where} ran", ops, notes)
        if probe_effect:
            notes.append(probe_effect)
        if missing:
            notes.append(vanished_note(missing))
    else:
        nf = by.get("float32", 0)
        effective = req if nf == total else "mixed"
        if nf < total:
            other = ", ".join(f"{v} {k}" for k, v in by.items() if k != "float32")
            notes.append(f"{where}: {other} of {total} {ops} nodes are not float32 in the model itself")
        if req == "tf32":
            notes.append("TF32 requested through the CUDA EP's use_tf32=1 (only Ampere or newer GPUs have it)")
    if transform.half_storage:
        notes.append(f"float16 storage emulated on the CPU: {transform.half_storage.get('rounded_tensors', 0)} "
                     "float16 tensor(s) rounded after their node, float32 arithmetic (as a GPU accumulates); "
                     f"{HALF_ENV}=native runs ONNX Runtime's own CPU float16")
    fallback = facts.cpu_fallback
    if spec.device == "cuda":
        if fallback is None:
            notes.append("node-to-EP assignment unknown (this onnxruntime cannot report it)")
        elif fallback:
            notes.append(f"{len(fallback)} compute node(s) fell back to CPUExecutionProvider: "
                         f"{', '.join(fallback[:3])}")
            if effective == req:
                effective = "mixed"
    return PrecisionReport(req, effective, tuple(notes))


def _fp16_effective(facts: GraphFacts, by: dict[str, int], ran: str, ops: str, transform: PrecisionTransform,
                    notes: list[str]) -> str:
    """The effective precision of an FP16 request from the dtypes `by` of its `ops` nodes; its notes go to `notes`."""
    total = sum(by.values())
    n16 = by.get("float16", 0)
    fed = min(facts.half_fed, total - n16) if by is facts.compute_dtypes else 0
    if n16 < total:
        notes.append(f"{ran} {total - n16} of {total} {ops} nodes in float32 (inserted Casts)"
                     + (f", {fed} of them on float16 values Cast up (float16 storage, float32 arithmetic: judged as "
                        "it ran)" if fed else "") + "; weights are still rounded to float16")
    other = facts.other_float_dtypes
    if by is facts.compute_dtypes and other.get("float32"):
        notes.append(f"{other['float32']} of {sum(other.values())} other float ops ran in float32 too")
    kept = (transform.fp32_nodes_user or 0) + (transform.fp32_nodes_required or 0)
    if kept:
        notes.append(f"{kept} node(s) kept in FP32 by the conversion (user list + float32-only inputs)")
    return "fp16" if n16 == total else ("fp32" if n16 + fed == 0 else "mixed")


def _int8_effective(facts: GraphFacts, by: dict[str, int], transform: PrecisionTransform, ran: str, ops: str,
                    notes: list[str]) -> str:
    """The effective precision of an INT8 request from the dtypes `by` of its `ops` nodes; its note goes to `notes`."""
    total = sum(by.values())
    n8 = by.get("int8", 0) + by.get("uint8", 0)
    fed = min(facts.int8_fed, total - n8)  # float kernels on int8-dequantized values: INT8's numbers, float arithmetic
    if n8 < total:
        notes.append(f"{ran} {n8} of {total} {ops} nodes as int8 kernels"
                     + (f", {fed} in float arithmetic on int8-dequantized inputs (Q/DQ)" if fed else "")
                     + f"; {total - n8 - fed} unquantized (float)")
    dropped = transform.clips_ort_drops or {}
    if dropped:
        name, lo = next(iter(dropped.items()))
        notes.append(f"ONNX Runtime's ClipQuantFusion drops {len(dropped)} Clip(s) in front of a QuantizeLinear whose "
                     f"int8 range reaches below the Clip's minimum by less than float32's epsilon (e.g. {name!r}, to "
                     f"{lo:.3g}): their negatives pass — activations this small (a random-init or badly scaled layer) "
                     "meet an optimiser rule that compares in absolute terms")
    return "int8" if n8 + fed == total else ("fp32" if n8 + fed == 0 else "mixed")


def _fp8_effective(facts: GraphFacts, by: dict[str, int], transform: PrecisionTransform, ran: str, ops: str,
                   notes: list[str]) -> str:
    """The effective precision of an FP8 request: its `ops` nodes fed by float8 DequantizeLinear (Q/DQ emulation:
    float32 arithmetic on E4M3-rounded values, as TensorRT's FP8 kernels accumulate in float32); the weights whose
    per-tensor scale flushes a share of them to zero, worst first."""
    total, n8 = sum(by.values()), facts.fp8_fed
    notes.append(f"{ran} {n8} of {total} {ops} nodes on FP8 (E4M3) Q/DQ inputs, in float32 arithmetic")
    notes.append(FP8_ORT_NOTE)
    flushed = sorted((transform.weights_flushed or {}).items(), key=lambda kv: -kv[1])
    if flushed:
        notes.append("FP8's per-tensor scale (max |w| / 448) flushes to zero " + ", ".join(
            f"{share:.0%} of {name}'s nonzero values" for name, share in flushed[:3])
            + (f" (and {len(flushed) - 3} more weights)" if len(flushed) > 3 else ""))
    return "fp8" if n8 == total else ("fp32" if n8 == 0 else "mixed")


def _block_effective(fmt: str, facts: GraphFacts, by: dict[str, int], transform: PrecisionTransform, ran: str,
                     ops: str, notes: list[str]) -> str:
    """The effective precision of an emulated NVFP4 / MXFP8 request, or file (the first note says it is emulated):
    its `ops` nodes that read the format's fake quant; the tensors whose NVFP4 block scales underflow, worst first."""
    from cp_debug.precision.block_formats import FORMATS
    from cp_debug.precision.block_quant import EMULATED

    total, n = sum(by.values()), facts.block_fed
    notes.append(f"{EMULATED}: {FORMATS[fmt].describe}, computed in float32 ONNX ops that round as the format does")
    notes.append(f"{ran} {n} of {total} {ops} nodes on the format's rounded inputs and weights, in float32 arithmetic"
                 + ("" if n == total else f"; the other {total - n} stay float32 (nodes left out by --exclude-int8, "
                    "and what the recipe leaves: activation × activation products, grouped convs)"))
    flushed = sorted((transform.blocks_flushed or {}).items(), key=lambda kv: -kv[1])
    if flushed:
        notes.append("NVFP4's block scale (block amax / (6 · tensor scale)) underflows E4M3's smallest subnormal "
                     "and flushes to zero " + ", ".join(f"{share:.0%} of {name}'s nonzero blocks"
                                                        for name, share in flushed[:3])
                     + (f" (and {len(flushed) - 3} more weights)" if len(flushed) > 3 else ""))
    return fmt if n else "fp32"  # the layers the recipe leaves in float32 are the format's deployment too


_QUANTIZED_EFFECTIVE = {"int8": _int8_effective, "fp8": _fp8_effective, "nvfp4": partial(_block_effective, "nvfp4"),
                        "mxfp8": partial(_block_effective, "mxfp8")}


def merge_graph_facts(all_facts: Sequence[GraphFacts]) -> GraphFacts:
    """The facts of several sessions (segments of one graph) as if of one: counts summed, fallbacks joined."""
    dtypes: Counter = Counter()
    other: Counter = Counter()
    ops: set[str] = set()
    casts = fp8 = block = int8 = half = 0
    fallback: tuple[str, ...] | None = ()
    error = None
    for f in all_facts:
        if f.error:
            error = error or f.error
            continue
        dtypes.update(f.compute_dtypes)
        ops.update(f.compute_ops)
        other.update(f.other_float_dtypes)
        casts += f.casts
        fp8 += f.fp8_fed
        block += f.block_fed
        int8 += f.int8_fed
        half += f.half_fed
        fallback = None if f.cpu_fallback is None or fallback is None else fallback + tuple(f.cpu_fallback)
    return GraphFacts(dict(dtypes), tuple(sorted(ops)), dict(other), casts, fallback, error, fp8_fed=fp8,
                      block_fed=block, int8_fed=int8, half_fed=half)


def merge_transforms(transforms: Sequence[PrecisionTransform]) -> PrecisionTransform:
    """One precision transform for several segments: counts summed (emulated float16 storage's too), FP8's flushed
    weights joined, the calibration samples the most any segment took (each segment calibrates on the same samples'
    values at its cut: a sum said "calibrated on 8 samples" of one sample cut in 8 segments); other facts are the
    first segment's."""
    if not transforms:
        return PrecisionTransform()
    first = transforms[0]
    sums: dict = {}
    for key in ("weights_flushed", "blocks_flushed"):
        if any(getattr(t, key) for t in transforms):
            sums[key] = {k: v for t in transforms for k, v in (getattr(t, key) or {}).items()}
    if any(t.half_storage for t in transforms):  # emulated float16 storage: its counts summed over the segments
        sums["half_storage"] = {k: sum((t.half_storage or {}).get(k, 0) for t in transforms)
                                for k in next(t.half_storage for t in transforms if t.half_storage)}
    for f in fields(first):
        v = getattr(first, f.name)
        if f.name == "calibration_feeds" and v is not None:
            sums[f.name] = max(getattr(t, f.name) or 0 for t in transforms)
        elif f.name not in ("segments", "block_size") and isinstance(v, int) and not isinstance(v, bool):
            sums[f.name] = v + sum(getattr(t, f.name) or 0 for t in transforms[1:])
    return replace(first, **sums, segments=len(transforms))


# -- reading ORT's optimised graph ---------------------------------------------------------------------------
def graph_facts(opt: "onnx.ModelProto") -> GraphFacts:
    """Compute-node counts by the dtype of their data input, propagated through the optimised graph."""
    dtypes = _propagate_dtypes(opt)
    by: Counter = Counter()
    ops: set[str] = set()
    for node in opt.graph.node:
        if node.op_type not in COMPUTE_OPS or not node.input:
            continue
        ops.add(node.op_type if node.op_type not in ("FusedConv", "NhwcConv", "NhwcFusedConv") else "Conv")
        by[_DTYPE_NAMES.get(dtypes.get(node.input[0]), "unknown")] += 1
    other: Counter = Counter()
    for node in opt.graph.node:
        if node.op_type in COMPUTE_OPS or node.op_type in _NOT_ARITHMETIC or not node.input:
            continue
        dt = _DTYPE_NAMES.get(dtypes.get(node.input[0]))
        if dt in ("float16", "float32", "bfloat16"):
            other[dt] += 1
    casts = sum(1 for n in opt.graph.node if n.op_type == "Cast")
    return GraphFacts(dict(by), tuple(sorted(ops)), dict(other), casts, fp8_fed=_fp8_fed(opt, dtypes),
                      block_fed=_block_fed(opt), int8_fed=_fed_from(opt, dtypes, {2, 3}),
                      half_fed=_half_fed(opt, dtypes))


def _fp8_fed(opt: "onnx.ModelProto", dtypes: dict[str, int]) -> int:
    """Compute nodes whose data input is a DequantizeLinear's output of a float8 tensor."""
    return _fed_from(opt, dtypes, _FLOAT8)


def _fed_from(opt: "onnx.ModelProto", dtypes: dict[str, int], kinds) -> int:
    """Compute nodes whose data input, and weight where they take one, are DequantizeLinear outputs of tensors of an
    element type in `kinds` (float arithmetic on the format's values: a fake-quantized Conv / MatMul / Gemm)."""
    made = {n.output[0] for n in opt.graph.node
            if n.op_type == "DequantizeLinear" and n.input and dtypes.get(n.input[0]) in kinds}
    return sum(1 for n in opt.graph.node if n.op_type in COMPUTE_OPS and n.input and n.input[0] in made
               and (len(n.input) < 2 or kinds is _FLOAT8 or n.input[1] in made))


def _half_fed(opt: "onnx.ModelProto", dtypes: dict[str, int]) -> int:
    """Compute nodes that read float16 values in float32 arithmetic: a data input Cast to float32 from a float16
    tensor (ORT CPU's Casts around a float16 Conv it has no kernel for), or a weight stored as float16 that ORT's CPU
    Cast up once, at load (its InsertCastTransformer names such an initializer `FusedBack_…`: an FP16 MLP's Gemms
    read float16-rounded weights in float32 arithmetic — ORT's own float16 on the CPU, judged as it ran, where it
    was "ran fp32", exit 3)."""
    up = {n.output[0] for n in opt.graph.node if n.op_type == "Cast" and n.input and dtypes.get(n.input[0]) == 10
          and any(a.name == "to" and a.i == 1 for a in n.attribute)}
    return sum(1 for n in opt.graph.node if n.op_type in COMPUTE_OPS and n.input
               and (n.input[0] in up or any(name.startswith(_CAST_BACK) for name in n.input[1:])))


def _block_fed(opt: "onnx.ModelProto") -> int:
    """Compute nodes whose data input is an NVFP4 / MXFP8 fake quant's output (`<tensor>_nvfp4_dq`, its names)."""
    from cp_debug.precision.block_quant import fake_quant_output

    return sum(1 for n in opt.graph.node if n.op_type in COMPUTE_OPS and n.input and fake_quant_output(n.input[0]))


def _propagate_dtypes(model: "onnx.ModelProto") -> dict[str, int]:
    """Element type of every tensor: from declared types, else forward rules (ORT's contrib ops have no inference)."""
    types: dict[str, int] = {}
    for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in model.graph.initializer:
        types[init.name] = init.data_type
    for _ in range(3):  # the dump is topologically ordered; extra passes cover the odd exception
        changed = False
        for node in model.graph.node:
            attrs = {a.name: a for a in node.attribute}
            for k, out in enumerate(node.output):
                if not out or out in types:
                    continue
                t = _rule(node, attrs, k, types)
                if t:
                    types[out] = t
                    changed = True
        if not changed:
            break
    return types


def _rule(node, attrs, k: int, types: dict[str, int]) -> int | None:
    op = node.op_type
    if op == "Cast" and "to" in attrs:
        return attrs["to"].i
    if op in _INT_OUT_OPS and k == 0:
        return _INT_OUT_OPS[op]
    if op == "TopK" and k == 1:
        return 7
    if op == "QuantizeLinear":
        if len(node.input) > 2 and node.input[2] in types:
            return types[node.input[2]]
        return attrs["output_dtype"].i if "output_dtype" in attrs and attrs["output_dtype"].i else 2
    if op == "DequantizeLinear":
        return types.get(node.input[1]) if len(node.input) > 1 else None
    if op.startswith("QLinear") and len(node.input) > 2:  # output type = output zero point's (last input)
        return types.get(node.input[-1]) or types.get(node.input[2])
    if op in ("Constant", "ConstantOfShape") and "value" in attrs:
        return attrs["value"].t.data_type
    for name in node.input:
        if name in types:
            return types[name]
    return None


def cpu_fallback(sess) -> list[str] | None:
    """Compute nodes ORT assigned to the CPU EP although another EP came first; None if ORT cannot say."""
    try:
        subgraphs = sess.get_provider_graph_assignment_info()
    except Exception:  # noqa: BLE001 - older ORT, or recording not enabled
        return None
    if not subgraphs:
        return None
    eps = {sg.ep_name for sg in subgraphs}
    if eps == {"CPUExecutionProvider"} and "CPUExecutionProvider" == sess.get_providers()[0]:
        return []
    return [n.name or n.op_type for sg in subgraphs if sg.ep_name == "CPUExecutionProvider"
            for n in sg.get_nodes() if n.op_type in COMPUTE_OPS]


def probe_effect(plain: GraphFacts, probed: GraphFacts) -> str | None:
    """What exposing probe outputs changed in ORT's kernels (it blocks Q/DQ fusion of the tensors it exposes)."""
    if plain.error or probed.error:
        return None

    def int8(f: GraphFacts) -> int:
        d = f.compute_dtypes
        return d.get("int8", 0) + d.get("uint8", 0)

    a, b = int8(plain), int8(probed)
    total = sum(plain.compute_dtypes.values())
    if a <= b:  # none blocked (ddddocr's quantize_dynamic file: ORT's plain graph fuses one int8 kernel into float)
        return None
    return (f"exposing probes kept ORT from fusing {a - b} of {a} int8 kernels (ran as float on dequantized "
            f"inputs, {total} compute nodes): probe values may differ from the deployed graph by int8 rounding")
