"""ONNX Runtime runner: CPU or CUDA EP, at FP32 / TF32 / FP16 / INT8, with probe tensors exposed as outputs.

Precision is applied to the ONNX graph (FP16 conversion, Q/DQ insertion), so what ORT really computed has to be
checked afterwards: the CPU provider has few float16 kernels and wraps float16 nodes in Casts, running them in
float32. `precision_report()` reads ORT's optimised graph (and, on CUDA, its node-to-EP assignment) and says
what ran.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from cp_debug.backends.base import PrecisionReport, Runner
from cp_debug.backends.spec import BackendSpec
from cp_debug.determinism import Determinism
from cp_debug.errors import BackendUnavailableError, BadInputError

if TYPE_CHECKING:  # pragma: no cover
    import onnx

ORT_CUDA_HINT = "ort-cuda needs onnxruntime-gpu: pip uninstall -y onnxruntime && pip install 'cp-debug[gpu]'"

# Nodes that do the arithmetic precision is about (ONNX ops plus ORT's fused/contrib/quantized forms).
COMPUTE_OPS = frozenset({
    "Conv", "ConvTranspose", "MatMul", "Gemm", "FusedConv", "FusedGemm", "FusedMatMul", "NhwcConv", "NhwcFusedConv",
    "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
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
_DTYPE_NAMES = {1: "float32", 10: "float16", 16: "bfloat16", 11: "float64", 3: "int8", 2: "uint8", 6: "int32", 7: "int64"}
_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(bfloat16)": None, "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16, "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_,
}


class OrtRunner(Runner):
    """Runs an ONNX model in ONNX Runtime (the `ort-*` specs).

    model: ONNX file or ModelProto (never modified).
    extra_outputs: intermediate tensors (original names) to return as well; for INT8 they are mapped through the
        quantizer's renaming (`tensor_map`) and returned under their original names.
    calib_feeds: calibration inputs, required for INT8.
    keep_fp32_nodes: node names kept in FP32 by the FP16 conversion. exclude_int8_nodes: nodes left unquantized.
    threads: ORT intra-op threads (None: ORT's default).
    spinning: let idle ORT threads busy-wait for the next run (ORT's default; off when other work interleaves).
    check_model: run the ONNX checker on a ModelProto given directly (off for segments cut by cp_debug itself).
    """

    def __init__(self, model: "onnx.ModelProto | str | Path", spec: BackendSpec | str, *,
                 extra_outputs: Iterable[str] = (), calib_feeds: Sequence[dict[str, np.ndarray]] | None = None,
                 keep_fp32_nodes: Iterable[str] = (), exclude_int8_nodes: Iterable[str] = (),
                 determinism: Determinism = Determinism(), threads: int | None = None, calib_method: str = "minmax",
                 spinning: bool = True, check_model: bool = True):
        spec = BackendSpec.parse(spec) if isinstance(spec, str) else spec
        if spec.framework != "ort":
            raise BadInputError(f"OrtRunner runs ort-* specs, not {spec}")
        super().__init__(str(spec))
        self.spec = spec
        self._model_src = model
        self.extra_outputs = tuple(dict.fromkeys(extra_outputs))
        self.calib_feeds = calib_feeds
        self.keep_fp32_nodes = tuple(keep_fp32_nodes)
        self.exclude_int8_nodes = tuple(exclude_int8_nodes)
        self.determinism = determinism
        self.threads = threads
        self.calib_method = calib_method
        self.spinning = spinning
        self.check_model = check_model
        self._reset()

    def _reset(self) -> None:
        self._sess = None
        self._inputs: dict[str, tuple[str, list]] = {}
        self._out_map: dict[str, str] = {}  # original name → session output name
        self._missing: list[str] = []
        self._quant = None
        self._transform: dict = {"kind": "none"}
        self._facts: dict | None = None
        self._probe_effect: str | None = None
        self._providers: list = []

    # -- the contract ------------------------------------------------------------------------------------
    def _activate(self) -> None:
        import onnxruntime as ort

        from cp_debug.graph.model import check_tensor_names, expose_outputs, load_onnx

        if self.spec.device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendUnavailableError(ORT_CUDA_HINT)
        self._reset()
        model = load_onnx(self._model_src, check=self.check_model)
        graph_outputs = [o.name for o in model.graph.output]
        extras = [n for n in self.extra_outputs if n not in graph_outputs]
        check_tensor_names(model, extras)
        precision = self.spec.precision
        plain = None  # the model without probe outputs, to measure what exposing probes changes (INT8)
        if precision == "int8":
            from cp_debug.precision.int8 import quantize_int8

            if not self.calib_feeds:
                raise BadInputError(f"{self.spec} needs calibration inputs (calib_feeds / --calib FILE.npz) to compute INT8 scales")
            q = quantize_int8(model, self.calib_feeds, exclude_nodes=self.exclude_int8_nodes, method=self.calib_method)
            self._quant = q
            self._transform = {"kind": "int8_qdq", "method": q.method, "symmetric": True, "per_channel": True,
                               "calibration_feeds": len(self.calib_feeds), "quantized_tensors": len(q.activation_amax),
                               "excluded_nodes": list(self.exclude_int8_nodes)}
            self._out_map = {n: n for n in graph_outputs}  # graph outputs are what a user reads: not re-quantized
            for n in extras:
                if n in q.tensor_map:
                    self._out_map[n] = q.tensor_map[n]
                else:
                    self._missing.append(n)
            plain = q.model
            probe_names = [self._out_map[n] for n in extras if n in self._out_map]
            model = expose_outputs(q.model, probe_names) if probe_names else q.model
        else:
            model = expose_outputs(model, extras) if extras else model
            self._out_map = {n: n for n in graph_outputs + extras}
            if precision == "fp16":
                from cp_debug.precision.fp16 import conversion_summary, convert_to_fp16

                model = convert_to_fp16(model, keep_fp32_nodes=self.keep_fp32_nodes)
                self._transform = {"kind": "fp16", "keep_fp32_nodes": list(self.keep_fp32_nodes),
                                   **(conversion_summary(model) or {})}
        self._providers = self._provider_list()
        self._sess, self._facts = self._session(model, self._providers, record=True)
        if plain is not None and len(model.graph.output) != len(plain.graph.output):
            _, plain_facts = self._session(plain, self._providers, record=False)
            self._probe_effect = _probe_effect(plain_facts, self._facts)
        self._inputs = {i.name: (i.type, list(i.shape)) for i in self._sess.get_inputs()}

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ort_feed = self._check_feed(feed)
        wanted = list(dict.fromkeys(self._out_map.values()))
        try:
            values = self._sess.run(wanted, ort_feed)
        except Exception as err:  # noqa: BLE001
            if type(err).__name__ in ("InvalidArgument", "InvalidGraph"):
                raise BadInputError(f"ONNX Runtime rejected the inputs: {_first_line(err)}") from err
            raise
        by_name = dict(zip(wanted, values))
        out: dict[str, np.ndarray] = {}
        for original, name in self._out_map.items():
            arr = np.asarray(by_name[name])
            out[original] = arr.astype(np.float32, copy=False) if np.issubdtype(arr.dtype, np.floating) else arr
        return out

    def _deactivate(self) -> None:
        self._sess = None  # what was learnt (precision facts, amax, names) stays readable after deactivate

    # -- information -------------------------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._out_map)

    @property
    def missing_outputs(self) -> list[str]:
        """Requested extra outputs that no longer exist after the precision transform."""
        return list(self._missing)

    def quant_amax(self) -> dict[str, float]:
        """Calibrated amax per original tensor name (INT8 only; {} otherwise)."""
        return dict(self._quant.activation_amax) if self._quant is not None else {}

    @property
    def quantized(self):
        """The `QuantizedModel` (INT8 after activate), else None."""
        return self._quant

    def settings(self) -> dict:
        return {
            "backend": str(self.spec),
            "onnxruntime": _ort_version(),
            "providers": [p if isinstance(p, str) else p[0] for p in self._providers] or self._provider_names(),
            "provider_options": {p[0]: p[1] for p in self._providers if not isinstance(p, str)},
            "graph_optimization_level": self.determinism.settings()["onnxruntime"]["graph_optimization_level"],
            "deterministic_compute": self.determinism.enabled,
            "intra_op_threads": self.threads,
            "precision_transform": self._transform,
            "extra_outputs": len(self.extra_outputs),
            "missing_outputs": list(self._missing),
        }

    def precision_report(self) -> PrecisionReport | None:
        if self._facts is None:  # never activated
            return None
        return precision_report_from_facts(self.spec, self._facts, self._transform, self._missing, self._probe_effect)

    @property
    def graph_facts(self) -> dict | None:
        """What ORT's optimised graph holds (compute dtypes, EP fallback): None before activate."""
        return self._facts

    @property
    def transform(self) -> dict:
        """The precision transform applied to the graph (kind, counts)."""
        return dict(self._transform)

    # -- internals ---------------------------------------------------------------------------------------
    def _provider_names(self) -> list[str]:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"] if self.spec.device == "cuda" else ["CPUExecutionProvider"]

    def _provider_list(self) -> list:
        if self.spec.device == "cuda":
            opts = self.determinism.ort_cuda_provider_options(tf32=self.spec.precision == "tf32")
            return [("CUDAExecutionProvider", opts), ("CPUExecutionProvider", {})]
        return [("CPUExecutionProvider", {})]

    def _session(self, model: "onnx.ModelProto", providers: list, record: bool):
        """An InferenceSession plus the facts read from ORT's optimised graph (dtypes of compute nodes, EP fallback)."""
        import onnx
        import onnxruntime as ort

        with tempfile.TemporaryDirectory(prefix="cpdebug_ort_") as tmp:
            opt_path = Path(tmp) / "optimized.onnx"
            big = model.ByteSize() > 1_800_000_000
            src: bytes | str
            if big:
                src = str(Path(tmp) / "model.onnx")
                onnx.save(model, src, save_as_external_data=True)
            else:
                src = model.SerializeToString()
            dump = None if big else str(opt_path)
            try:
                try:
                    so = self.determinism.ort_session_options(
                        threads=self.threads, optimized_model_filepath=dump, record_assignment=record,
                        spinning=self.spinning)
                    sess = ort.InferenceSession(src, sess_options=so, providers=providers)
                except Exception:  # noqa: BLE001 - saving the optimised graph can fail (fused EP nodes): retry without
                    if dump is None:
                        raise
                    so = self.determinism.ort_session_options(threads=self.threads, record_assignment=record,
                                                              spinning=self.spinning)
                    sess = ort.InferenceSession(src, sess_options=so, providers=providers)
            except Exception as err:  # noqa: BLE001 - ORT raises its own pybind exception types
                kind = type(err).__name__
                if kind == "NotImplemented":
                    raise BackendUnavailableError(
                        f"{self.spec}: ONNX Runtime has no kernel for a node of this model at this precision: {_first_line(err)}"
                    ) from err
                raise BadInputError(f"ONNX Runtime cannot load the model for {self.spec}: {_first_line(err)}") from err
            facts: dict = {}
            if big or not opt_path.is_file():
                facts["error"] = "model too large to dump" if big else "ORT wrote no optimised model"
            else:
                try:
                    facts.update(_graph_facts(onnx.load(str(opt_path), load_external_data=False)))
                except Exception as err:  # noqa: BLE001
                    facts["error"] = _first_line(err)
            facts["cpu_fallback"] = _cpu_fallback(sess) if record else None
        return sess, facts

    def _check_feed(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not isinstance(feed, dict):
            raise BadInputError(f"the feed must be a dict of input name → array, got {type(feed).__name__}")
        names = list(self._inputs)
        unknown = [k for k in feed if k not in self._inputs]
        if unknown:
            raise BadInputError(f"unknown input name(s) {', '.join(map(repr, unknown))}: the model's inputs are {', '.join(names)}")
        missing = [k for k in names if k not in feed]
        if missing:
            raise BadInputError(f"missing input(s) {', '.join(map(repr, missing))}: the model's inputs are {', '.join(names)}")
        out = {}
        for name, value in feed.items():
            type_str, dims = self._inputs[name]
            arr = np.asarray(value)
            want = _ORT_TYPES.get(type_str)
            if want is not None and arr.dtype != want:
                if np.dtype(want).kind != arr.dtype.kind and not (np.dtype(want).kind in "iu" and arr.dtype.kind in "iu"):
                    raise BadInputError(f"input {name!r} has dtype {arr.dtype}, the model wants {np.dtype(want).name}")
                if np.dtype(want).kind in "iu" and arr.size:
                    info = np.iinfo(want)
                    if arr.min() < info.min or arr.max() > info.max:
                        raise BadInputError(f"input {name!r} has values outside {np.dtype(want).name}'s range")
                arr = arr.astype(want)
            if len(arr.shape) != len(dims):
                raise BadInputError(f"input {name!r} has shape {tuple(arr.shape)} (rank {arr.ndim}); the model wants rank "
                                    f"{len(dims)}: {_fmt_dims(dims)}")
            bad = [i for i, (a, d) in enumerate(zip(arr.shape, dims)) if isinstance(d, int) and d >= 0 and a != d]
            if bad:
                raise BadInputError(f"input {name!r} has shape {tuple(arr.shape)}; the model wants {_fmt_dims(dims)} "
                                    f"(dimension {bad[0]} differs)")
            out[name] = np.ascontiguousarray(arr)
        return out


def precision_report_from_facts(spec: BackendSpec, facts: dict, transform: dict, missing: Sequence[str] = (),
                                probe_effect: str | None = None) -> PrecisionReport:
    """What precision ORT really ran, from the facts read off its optimised graph (one session's or merged)."""
    req = spec.precision
    notes: list[str] = []
    if facts.get("error"):
        notes.append(f"could not read ORT's optimised graph ({facts['error']}): precision unverified")
        return PrecisionReport(req, "unknown", tuple(notes))
    by = facts["compute_dtypes"]
    where = "ORT CPU" if spec.device == "cpu" else "ORT CUDA"
    ops = "/".join(sorted(facts["compute_ops"])) or "compute"
    if not by and req in ("fp16", "fp32", "tf32"):  # no Conv/MatMul/Gemm: judge by the elementwise float ops
        by, ops = facts.get("other_float_dtypes", {}), "float arithmetic"
    total = sum(by.values())
    if total == 0:
        notes.append("the optimised graph has no Conv/MatMul/Gemm nodes: nothing to verify")
        effective = req
    elif req == "fp16":
        n16 = by.get("float16", 0)
        effective = "fp16" if n16 == total else ("fp32" if n16 == 0 else "mixed")
        if n16 < total:
            notes.append(f"{where} ran {total - n16} of {total} {ops} nodes in float32 (inserted Casts); "
                         "weights are still rounded to float16")
        other = facts.get("other_float_dtypes", {})
        if by is facts["compute_dtypes"] and other.get("float32"):
            notes.append(f"{other['float32']} of {sum(other.values())} other float ops ran in float32 too")
        kept = transform.get("fp32_nodes_user", 0) + transform.get("fp32_nodes_required", 0)
        if kept:
            notes.append(f"{kept} node(s) kept in FP32 by the conversion (user list + float32-only inputs)")
    elif req == "int8":
        n8 = by.get("int8", 0) + by.get("uint8", 0)
        effective = "int8" if n8 == total else ("fp32" if n8 == 0 else "mixed")
        if n8 < total:
            notes.append(f"{where} ran {n8} of {total} {ops} nodes as int8 kernels; "
                         f"{total - n8} in float on dequantized inputs or unquantized")
        if probe_effect:
            notes.append(probe_effect)
        if missing:
            notes.append(f"{len(missing)} probe tensor(s) vanished in quantization: {', '.join(missing[:3])}")
    else:
        nf = by.get("float32", 0)
        effective = req if nf == total else "mixed"
        if nf < total:
            other = ", ".join(f"{v} {k}" for k, v in by.items() if k != "float32")
            notes.append(f"{where}: {other} of {total} {ops} nodes are not float32 in the model itself")
        if req == "tf32":
            notes.append("TF32 requested through the CUDA EP's use_tf32=1 (only Ampere or newer GPUs have it)")
    fallback = facts.get("cpu_fallback")
    if spec.device == "cuda":
        if fallback is None:
            notes.append("node-to-EP assignment unknown (this onnxruntime cannot report it)")
        elif fallback:
            notes.append(f"{len(fallback)} compute node(s) fell back to CPUExecutionProvider: {', '.join(fallback[:3])}")
            if effective == req:
                effective = "mixed"
    return PrecisionReport(req, effective, tuple(notes))


def merge_graph_facts(all_facts: Sequence[dict]) -> dict:
    """The facts of several sessions (segments of one graph) as if of one: counts summed, fallbacks joined."""
    out: dict = {"compute_dtypes": Counter(), "compute_ops": set(), "other_float_dtypes": Counter(), "casts": 0,
                 "cpu_fallback": []}
    for f in all_facts:
        if f.get("error"):
            out.setdefault("error", f["error"])
            continue
        out["compute_dtypes"].update(f.get("compute_dtypes", {}))
        out["compute_ops"].update(f.get("compute_ops", ()))
        out["other_float_dtypes"].update(f.get("other_float_dtypes", {}))
        out["casts"] += f.get("casts", 0)
        fb = f.get("cpu_fallback")
        out["cpu_fallback"] = None if fb is None or out["cpu_fallback"] is None else out["cpu_fallback"] + list(fb)
    out["compute_dtypes"] = dict(out["compute_dtypes"])
    out["other_float_dtypes"] = dict(out["other_float_dtypes"])
    out["compute_ops"] = sorted(out["compute_ops"])
    return out


def merge_transforms(transforms: Sequence[dict]) -> dict:
    """One precision-transform summary for several segments: numeric fields summed."""
    if not transforms:
        return {"kind": "none"}
    out = dict(transforms[0])
    for t in transforms[1:]:
        for k, v in t.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and isinstance(out.get(k), (int, float)):
                out[k] += v
    out["segments"] = len(transforms)
    return out


# -- reading ORT's optimised graph ---------------------------------------------------------------------------
def _graph_facts(opt: "onnx.ModelProto") -> dict:
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
    return {"compute_dtypes": dict(by), "compute_ops": sorted(ops), "other_float_dtypes": dict(other), "casts": casts}


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


def _cpu_fallback(sess) -> list[str] | None:
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


def _probe_effect(plain: dict, probed: dict) -> str | None:
    """What exposing probe outputs changed in ORT's kernels (it blocks Q/DQ fusion of the tensors it exposes)."""
    if plain.get("error") or probed.get("error"):
        return None

    def int8(f):
        d = f["compute_dtypes"]
        return d.get("int8", 0) + d.get("uint8", 0)

    a, b = int8(plain), int8(probed)
    total = sum(plain["compute_dtypes"].values())
    if a == b:
        return None
    return (f"exposing probes kept ORT from fusing {a - b} of {a} int8 kernels (ran as float on dequantized "
            f"inputs, {total} compute nodes): probe values may differ from the deployed graph by int8 rounding")


def _fmt_dims(dims: list) -> str:
    return "[" + ", ".join(str(d) if d is not None else "?" for d in dims) + "]"


def _first_line(err: BaseException) -> str:
    text = [line for line in str(err).strip().splitlines() if line.strip()]
    return " ".join(text[:2])[:300] if text else type(err).__name__


def _ort_version() -> str | None:
    try:
        import onnxruntime as ort

        return ort.__version__
    except Exception:  # noqa: BLE001
        return None

