"""A user's Q/DQ file with nodes left out of its quantization, as its quantizer's `nodes_to_exclude` leaves them
(`cures/qdq_exclude.py` tries that cure; `cures/restore.py` restores a root cause so in the file): the Q/DQ pairs
feeding the nodes removed, a weight stored quantized read as the reference's float weight of the same node, an
activation read through the Relu a quantizer folded into its pair, and the pairs on a node's output that only its
quantization put there (`_left_float`): at its scale through ops that pass it on (Reshape, Transpose, …) to readers that
quantize nothing (an LSTM) or to a graph output, as `nodes_to_exclude` leaves that tensor float (BeatNet's input Gemm:
its output pair and the two after its Reshape and Transpose, read by a float LSTM, kept by the file's exclusion moved
one beat's kind that the quantizer's own exclusion brings back). An activation pair that a reader kept in the
quantization also quantizes stays read by the node left out, as the quantizer leaves one quantized tensor
(facenet-pytorch's PNet: `conv4_1` left out reads `prelu3`'s pair that `conv4_2` quantizes), and so does a pair the
file's tool writes with the op kept that writes it (`output_paired`, by the file's producer: ONNX Runtime's quantizer
pairs a Conv's, Gemm's and MatMul's output, ModelOpt's none — BlazeFace's `conv2d_16` left out keeps reading
`depthwise_conv2d_15`'s pair)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cp_debug.precision.nbits import dq_arrays

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.run_state import CandidateState, RunState

FOLDED = ("Relu", "Clip")  # activations a quantizer folds into the range of the Q/DQ pair after them
# ops a quantizer quantizes at their input's scale (ONNX Runtime's QDQ: the pair after them shares the one before)
PASSED = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "MaxPool", "Gather", "Slice",
          "Split", "Resize", "Expand", "Pad")
# of those, the ops that only move or repeat values: their output's range is their input's
LAYOUT = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Expand")
# ops whose inputs ONNX Runtime's QDQ quantizer quantizes by default (its registries, less the ops above): a tensor
# one of them reads keeps its pair where its writer is left out
QUANTIZES = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "Relu", "Clip", "LeakyRelu", "Sigmoid",
             "GlobalAveragePool", "AveragePool", "Concat", "ArgMax", "Softmax", "Where", "InstanceNormalization",
             "LayerNormalization", "BatchNormalization")
# ops it quantizes only where asked (`op_types_to_quantize`): one quantizes where the file quantizes its output too
# (RivaGAN's decoder: a ReduceMean, read past the left-out Mul's pair and its Reshape's, writes a float output)
ASKED = ("HardSigmoid", "Tanh", "Sub", "Div", "Pow", "Sqrt", "ReduceMean", "Min", "Max")
# ops its QDQ quantizer quantizes through its base operator: their outputs too, whoever reads them (a Mul's output
# keeps its pair where the Reshape reading it is left out)
OUTPUT_PAIRED = ("Add", "Mul", "Softmax", "Sigmoid", "LeakyRelu", "Concat", "GlobalAveragePool", "ArgMax", "CumSum")
# ops whose output its QDQ quantizer quantizes with the op too (`QDQConv` / `QDQGemm` / `QDQMatMul` call
# `quantize_activation_tensor(node.output[0])`): a reader left out keeps reading that pair (BlazeFace's `conv2d_16`
# left out reads `depthwise_conv2d_15`'s output pair). ModelOpt's quantizer passes every op type it quantizes as
# `OpTypesToExcludeOutputQuantization`: no output of its files is its writer's (`output_paired`)
WEIGHTED_PAIRED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


class NoFloatWeight(Exception):
    """A node to leave out reads a weight the file stores quantized, and no FP32 weight of the reference's is it."""


def without_qdq(model, nodes: list[str], reference=None, values=None):
    """`model` with the Q/DQ pairs feeding `nodes` removed for them (module docstring). `reference`: the FP32 graph
    whose node of the same name gives back a weight the file stores quantized, where that weight re-quantized with
    the file's scale is the file's levels (`NoFloatWeight` where none is: a dequantized weight keeps the rounding
    leaving the node out removes). An activation whose pair clips at 0 is read through the Relu a quantizer folds
    into such a pair (the reference's Relu / Clip of that tensor where it has one). `values`: (tensor names) → their
    float values on the calibration samples (`reference_values`), for the pairs a node left out shared its scale with
    through an op that passes it on (`_left_float`'s `own`): the quantizer gives such a tensor a scale of its own,
    calibrated here as its MinMax does; without `values` those pairs keep the file's scale."""
    import onnx_graphsurgeon as gs
    from onnx import numpy_helper

    from cp_debug.bisect.cures.qoperator_exclusion import with_float_ops
    from cp_debug.graph.model import cleanup, constant_tensors, export_like
    from cp_debug.graph.weight_store import import_graph

    # paddle2onnx's Clip bounds are Constant nodes: a Clip ONNX Runtime folded into its pair is read through again
    # with them
    inits = constant_tensors(reference.graph) if reference is not None else {}
    model = with_float_ops(model, nodes, reference)  # a QOperator file's integer op left out: its float op again
    ref_nodes = {n.name: n for n in reference.graph.node} if reference is not None else {}
    written = {o for n in ref_nodes.values() for o in n.output}  # the reference's own tensors, by name
    folded = {n.output[0]: n for n in ref_nodes.values() if n.op_type in FOLDED
              and all(x in inits for x in n.input[1:] if x)}
    paired = output_paired(model)
    graph = import_graph(model)
    made: dict = {}  # a tensor read through its folded activation once, whichever of its readers are left out
    for node in (n for n in graph.nodes if n.name in nodes):
        for k, x in enumerate(node.inputs):
            dq = x.inputs[0] if len(x.inputs) == 1 else None
            if dq is None or dq.op != "DequantizeLinear":
                continue
            src = dq.inputs[0]
            q = src.inputs[0] if len(src.inputs) == 1 else None
            if q is not None and q.op == "QuantizeLinear":
                if any(r.name not in nodes and _quantizes(r, x) for r in x.outputs):
                    continue  # quantized for a reader kept in INT8: nodes_to_exclude leaves it read so (one tensor)
                writer = q.inputs[0].inputs[0] if len(q.inputs[0].inputs) == 1 else None
                if writer is not None and writer.op in paired and writer.name not in nodes:
                    continue  # quantized as its writer's output: the writer kept in INT8 keeps it
                if q.inputs[0].name not in made:
                    made[q.inputs[0].name] = _unfolded(graph, q, folded, inits, written)
                node.inputs[k] = made[q.inputs[0].name]
                continue
            if not isinstance(src, gs.Constant) or not isinstance(dq.inputs[1], gs.Constant):
                continue
            ref = ref_nodes.get(node.name)
            ref = inits.get(ref.input[k]) if ref is not None and k < len(ref.input) else None
            value = numpy_helper.to_array(ref) if ref is not None else _same_levels(dq, src, inits)
            if value is None or not _same_weight(dq, src, value):
                raise NoFloatWeight(f"the file stores {node.name}'s input {k} quantized, and the FP32 graph holds no "
                                    "float weight that quantizes to it (give the graph the tool quantized: --onnx)")
            node.inputs[k] = gs.Constant(f"{x.name}_float", value.astype(np.float32 if x.dtype is None else x.dtype))
    _outputs_float(graph, nodes, values)
    return export_like(cleanup(graph).toposort(), model)


def output_paired(model) -> tuple[str, ...]:
    """The op types whose output pair the tool that wrote `model` (`qdq_exclude.producer`) writes with the op, so
    that leaving out only a reader keeps it: ONNX Runtime's QDQ quantizer (the built-in INT8 candidate's, and the rule
    assumed where the file does not say — `ExcludeCure.text` says so) `OUTPUT_PAIRED` and `WEIGHTED_PAIRED`; ModelOpt's
    none (`OpTypesToExcludeOutputQuantization`: every op type it quantizes)."""
    from cp_debug.bisect.cures.qdq_producer import MODELOPT, producer

    return () if producer(model) == MODELOPT else OUTPUT_PAIRED + WEIGHTED_PAIRED


def _outputs_float(graph, nodes: list[str], values) -> None:
    """The pairs on the outputs of `nodes` that only their quantization put there removed (`_left_float`), and those
    read quantized past an op passing their scale on given a scale of their own (`values`: `without_qdq`'s)."""
    own = []  # the pairs read by a reader that quantizes, past an op passing on a left-out node's scale
    for node in [n for n in graph.nodes if n.name in nodes]:
        for out in node.outputs:
            pairs, kept = _left_float(out, own=values is not None)
            own += kept
            for q, dq in pairs:
                if not dq.outputs[0].outputs:
                    _output_float(graph, q, dq)
                    continue
                for reader in list(dq.outputs[0].outputs):
                    for k, x in enumerate(reader.inputs):
                        if x is dq.outputs[0]:
                            reader.inputs[k] = q.inputs[0]
    if own:
        _own_scales(own, values([q.inputs[0].name for q, _ in own]))


def _output_float(graph, q, dq) -> None:
    """A pair of `_left_float`'s that writes a graph output: the graph output written float by the op before it,
    under its name, as the quantizer leaves it (RivaGAN's encoder: `Add_65` left out writes 'output'; natasha's syntax
    parser: `/rels/MatMul_1` left out, its Squeeze writes 'rels' float — its input no longer quantized, the quantizer
    quantizes neither side of it)."""
    final = dq.outputs[0]
    if final.outputs or not any(o is final for o in graph.outputs):
        return
    out = q.inputs[0]
    k = next(i for i, o in enumerate(graph.outputs) if o is final)
    name = final.name
    final.name, dq.outputs = f"{name}_paired", []
    out.name, out.dtype, out.shape = name, final.dtype, out.shape if out.shape is not None else final.shape
    graph.outputs[k] = out


def _own_scales(own: list, got: dict) -> None:
    """Each pair of `own` given a scale and zero point of its own from its tensor's values in `got`, as ONNX
    Runtime's MinMax calibration computes them (the range widened to hold 0; the pair's level type kept)."""
    import onnx_graphsurgeon as gs

    for q, dq in own:
        value = got.get(q.inputs[0].name)
        zero = q.inputs[2] if len(q.inputs) > 2 and isinstance(q.inputs[2], gs.Constant) else None
        if value is None or not np.size(value) or zero is None:
            continue
        dtype = np.asarray(zero.values).dtype
        if dtype not in (np.dtype(np.int8), np.dtype(np.uint8)):
            continue
        qmin, qmax = float(np.iinfo(dtype).min), float(np.iinfo(dtype).max)
        lo, hi = min(float(np.min(value)), 0.0), max(float(np.max(value)), 0.0)
        scale = (hi - lo) / (qmax - qmin) or 1.0
        zp = np.asarray(np.clip(np.round(qmin - lo / scale), qmin, qmax), dtype)
        sc = gs.Constant(f"{q.name}_own_scale", np.asarray(scale, np.asarray(q.inputs[1].values).dtype))
        zc = gs.Constant(f"{q.name}_own_zero_point", zp)
        q.inputs[1], q.inputs[2] = sc, zc
        dq.inputs[1], dq.inputs[2] = sc, zc


def _left_float(tensor, own: bool = False) -> tuple[list, list]:
    """The (QuantizeLinear, DequantizeLinear) pairs on `tensor` (written by a node left out) and, at its scale, on the
    outputs of the ops that pass it on (`PASSED`), where every other reader quantizes nothing (its outputs read by no
    QuantizeLinear, its other inputs by no DequantizeLinear: a float LSTM): what `nodes_to_exclude` leaves float. None
    where a reader quantizes (it reads the tensor quantized whether or not the writer is: a Conv after a Conv), or a
    pair holds a scale of its own; a pair writing a graph output is among them (`_output_float`). `own`: a reader that
    quantizes past an op passing the scale on (an Add after a MaxPool after a Pad left out) keeps its pair, which the
    quantizer calibrates on that tensor's own values — the pairs before it left float, it second (with a scale of its
    own) — except past ops that only move values (`LAYOUT`): their tensor holds the left-out node's values, whose range
    on the file's calibration is the file's scale already; that pair stays as the file has it (attacut's `conv1` left
    out: the pair past its Transpose and Unsqueeze, read by a Concat)."""
    pairs, kept, todo, scale = [], [], [(tensor, True)], None
    while todo:
        t, same = todo.pop()
        for q in [r for r in t.outputs if r.op == "QuantizeLinear"]:
            name = getattr(q.inputs[1], "name", None) if len(q.inputs) > 1 else None
            scale = name if scale is None else scale
            if name is None or name != scale:
                return [], []
            for dq in list(q.outputs[0].outputs):
                if dq.op != "DequantizeLinear" or not dq.outputs:
                    return [], []
                if not dq.outputs[0].outputs:  # a graph output's pair (`_output_float`)
                    pairs.append((q, dq))
                    continue
                if own and t is not tensor and any(_quantizes(r, dq.outputs[0]) for r in dq.outputs[0].outputs):
                    if not same:  # read quantized past an op that changed its values: a scale of its own
                        kept.append((q, dq))
                    continue
                pairs.append((q, dq))
                for reader in dq.outputs[0].outputs:
                    out = reader.outputs[0] if reader.outputs else None
                    if reader.op in PASSED and out is not None and any(
                            r.op == "QuantizeLinear" and getattr(r.inputs[1], "name", None) == scale
                            for r in out.outputs):
                        todo.append((out, same and reader.op in LAYOUT))
                    elif _quantizes(reader, dq.outputs[0]):
                        return [], []
    return pairs, kept


def _quantizes(node, read) -> bool:
    """Whether `node` (reading `read` through a pair) quantizes its input: another input of its written by a
    DequantizeLinear (a weight), or an op ONNX Runtime's QDQ quantizer quantizes the inputs of (`QUANTIZES`). A
    PRelu or an LSTM reads float where its writer is left out, though a pair may follow it for its own readers
    (facenet-pytorch's PNet: `conv3` left out, `prelu3` reads it float). An op of `ASKED` quantizes where a
    QuantizeLinear reads one of its outputs that its readers do not explain: a pair read only by ops that quantize
    their inputs anyway (`QUANTIZES`) is theirs (RivaGAN's encoder: `Tanh_5`'s output pair is its BatchNorm's; with
    `Conv_4` left out, the quantizer leaves `Conv_4`'s output float)."""
    if node.op in QUANTIZES or (node.op in ASKED and any(
            r.op == "QuantizeLinear" and not _readers_quantize(r) for out in node.outputs for r in out.outputs)):
        return True
    return any(x is not read and len(x.inputs) == 1 and x.inputs[0].op == "DequantizeLinear" and _constant(x.inputs[0])
               for x in node.inputs)


def _readers_quantize(q) -> bool:
    """Whether every node reading QuantizeLinear `q`'s pair quantizes its inputs of its own (`QUANTIZES`)."""
    readers = [r for dq in q.outputs[0].outputs if dq.op == "DequantizeLinear" for o in dq.outputs for r in o.outputs]
    return bool(readers) and all(r.op in QUANTIZES for r in readers)


def _constant(dq) -> bool:
    """A DequantizeLinear of a weight: its levels stored, or a constant quantized before it. Another activation's
    pair is no weight: a Sub reading two Mul outputs' pairs quantizes nothing itself (magika's LayerNorm written as
    ops, E[x²] − E[x]²: both writers left out, the quantizer leaves the Sub reading float)."""
    import onnx_graphsurgeon as gs

    src = dq.inputs[0]
    if isinstance(src, gs.Constant):
        return True
    q = src.inputs[0] if src.inputs else None
    return q is not None and q.op == "QuantizeLinear" and isinstance(q.inputs[0], gs.Constant)


def _unfolded(graph, q, folded: dict, inits: dict, written: set = frozenset()):
    """What entered QuantizeLinear `q` (an activation, or a float weight in ModelOpt's layout) as the node left out
    reads it: through the activation the quantizer folded into the pair's range where the file computes none (ORT's
    quantize_static drops a Relu whose output it quantizes as uint8): the reference's Relu / Clip of that tensor, else
    a Relu where the pair clips at exactly 0 (a range calibrated on values never negative: a no-op otherwise)."""
    import onnx_graphsurgeon as gs
    from onnx import helper, numpy_helper

    tensor = q.inputs[0]
    made = tensor.inputs[0].op if len(tensor.inputs) == 1 else None
    ref = folded.get(tensor.name)
    # a tensor the reference writes by that name with no Relu / Clip is no folded activation, though its pair may
    # clip at 0: a range so wide that the zero point rounds to the lowest level (pipecat's smart-turn: a GELU's
    # output, [-0.17, 113] at uint8, read through a Relu zeroed its negatives and moved every turn's call)
    if made in FOLDED or isinstance(tensor, gs.Constant) or (ref is None and (not _clips_at_zero(q)
                                                                              or tensor.name in written)):
        return tensor
    op = ref.op_type if ref is not None else "Relu"
    consts = [gs.Constant(f"{x}_unfolded", numpy_helper.to_array(inits[x])) if x else gs.Variable.empty()
              for x in (ref.input[1:] if ref is not None else ())]
    attrs = {a.name: helper.get_attribute_value(a) for a in ref.attribute} if ref is not None else {}
    out = gs.Variable(f"{tensor.name}_unfolded", dtype=tensor.dtype, shape=tensor.shape)
    graph.nodes.append(gs.Node(op, f"{tensor.name}_unfolded_{op}", attrs, [tensor, *consts], [out]))
    return out


def _clips_at_zero(q) -> bool:
    """Whether QuantizeLinear `q`'s range starts at exactly 0: its zero point at the format's lowest level."""
    import onnx_graphsurgeon as gs

    if len(q.inputs) < 3 or not isinstance(q.inputs[2], gs.Constant):
        return False
    zero = np.asarray(q.inputs[2].values)
    lowest = {np.dtype(np.uint8): 0, np.dtype(np.int8): -128, np.dtype(np.uint16): 0,
              np.dtype(np.int16): -32768}.get(zero.dtype)
    return lowest is not None and bool(np.all(zero.astype(np.int64) == lowest))


def _same_levels(dq, src, inits: dict) -> np.ndarray | None:
    """The reference's float weight that quantizes to `src` (read by `dq`), found by its values where the reference
    graph names its nodes otherwise (a `--torch` run's own export: `node_MatMul_89` for the file's
    `/bert/encoder/layer.0/output/dense/MatMul`); None where none, or more than one, does."""
    from onnx import numpy_helper

    shape = tuple(np.asarray(src.values).shape)
    found = [v for t in inits.values() if tuple(t.dims) == shape
             and _same_weight(dq, src, v := numpy_helper.to_array(t))]
    return found[0] if len(found) == 1 else None


def _same_weight(dq, src, value: np.ndarray) -> bool:
    """Whether `value` (a float weight) is the one stored quantized as `src` and read by `dq`: dequantized, the file's
    levels lie within a level (integer formats) or E4M3's rounding (float8) of it, for 99 % of the elements."""
    levels = np.asarray(src.values)
    if tuple(value.shape) != tuple(levels.shape):
        return False
    zero = dq.inputs[2].values if len(dq.inputs) > 2 and getattr(dq.inputs[2], "values", None) is not None else None
    parts = dq_arrays(levels, dq.inputs[1].values, zero, int(dq.attrs.get("axis", 1)),
                      int(dq.attrs.get("block_size", 0)), np.float64)
    if parts is None:  # a scale that does not fit the levels: no weight of the reference's is shown to be it
        return False
    q, zp, scale = parts
    got = (q - zp) * scale  # the file's levels dequantized with its own numbers (`nbits.dq_arrays`)
    ref = np.asarray(value, np.float64)
    step = (np.abs(ref) * 2.0 ** -3 + scale * 2.0 ** -9 if not np.issubdtype(levels.dtype, np.integer)
            else scale * 1.01)
    return bool(np.mean(np.abs(got - np.clip(ref, got.min() - step, got.max() + step)) <= step) >= 0.99)


def reference_values(run: "RunState", state: "CandidateState", i: int, names: list[str], asked: list[str]) -> dict:
    """The float values of the tensors `names` from the reference's FP32 graph (the file keeps its tensors' names),
    those it does not hold left out; `asked` gets the names it gives. Over every `--calib` sample where the run has
    them (stage 0), as the quantizer calibrated the file — a scale set on the judged sample alone fits that sample and
    can bring back a decision the quantizer's own exclusion leaves flipped (attacut's boundary: 0.502 against 0.361);
    else on the candidate's feed of stage i. Each value flattened, the samples one after another."""
    from cp_debug.graph.model import expose_outputs
    from cp_debug.graph.session import run_ort

    ref = run.subject.stages[i].onnx()
    held = {o for n in ref.graph.node for o in n.output}
    names = [n for n in names if n in held]
    asked += names
    if not names:
        return {}
    feeds = run.calib(i) if i == 0 and run.opts.calib_feeds else [state.feeds.get(i) or run.ref_feeds[i]]
    exposed = expose_outputs(ref, names)
    got = [run_ort(exposed, feed) for feed in feeds]
    return {n: np.concatenate([np.ravel(g[n]) for g in got]) for n in names if all(n in g for g in got)}
