"""Reader of `trtexec --exportLayerInfo` (the engine inspector's JSON), and what it tells against the ONNX graph.

`read_layer_info`: `trtexec --exportLayerInfo=FILE --profilingVerbosity=detailed`: which engine layer computes
which tensor, from which ONNX nodes, in which precision; `precision_mismatches` and `unobservable` read it against
the ONNX graph and the dumps (`trt_dumps_numpy.py`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cp_debug.backends.trt.trt_dumps_files import RECOPY, existing
from cp_debug.backends.trt.trt_dumps_numpy import DebugDumps
from cp_debug.errors import BadInputError, first_line


# Precision tokens of a tensor's "Format/Datatype" text, as the inspector writes them ("Row major linear FP32",
# "Channel major FP16 format where channel % 8 == 0", "Thirty-two wide channel vectorized row major Int8 format";
# Myelin/kgen layers write the bare type: "Half", "Float"): the format table of TensorRT's trt-engine-explorer
# (tools/experimental/trt-engine-explorer/trex/activations.py, NVIDIA/TensorRT up to 11.0).
_PRECISION_WORDS = {"fp32": "fp32", "float": "fp32", "fp16": "fp16", "half": "fp16", "bfloat16": "bf16",
                    "bf16": "bf16", "int8": "int8", "fp8": "fp8", "fp4": "fp4", "fp4e2m1": "fp4", "int4": "int4",
                    "int32": "int32", "int64": "int64", "uint8": "uint8", "bool": "bool", "double": "fp64",
                    "int16": "int16"}
_FLOATS = ("fp32", "fp16", "bf16", "fp8", "fp4", "fp64")
_ONNX_LAYER = re.compile(r"^\[ONNX Layer: (.*)\]$", re.S)
_PROFILE_SUFFIX = re.compile(r" \[profile \d+\]$")


def _precision_of(text: str) -> str | None:
    for word in re.split(r"[^A-Za-z0-9]+", text or ""):
        if word.lower() in _PRECISION_WORDS:
            return _PRECISION_WORDS[word.lower()]
    return None


@dataclass(frozen=True)
class LayerTensor:
    """One input or output of an engine layer: its name, format text and the precision that text names."""

    name: str
    format: str
    precision: str | None
    dimensions: tuple[int, ...] | None = None

    def to_json(self) -> dict:
        return {"name": self.name, "format": self.format, "precision": self.precision,
                "dimensions": None if self.dimensions is None else list(self.dimensions)}


@dataclass(frozen=True)
class EngineLayer:
    """One layer of the built engine. `onnx_nodes`: the ONNX nodes it was built from, from its "Metadata"
    ("[ONNX Layer: NAME]" entries joined by \\x1e or \\x1f); `name_parts`: its name split on " + " (how fused
    layers are named), the fallback where a TensorRT writes no Metadata. `precision`: its first floating
    output's (else first output's) precision."""

    name: str
    type: str
    inputs: tuple[LayerTensor, ...]
    outputs: tuple[LayerTensor, ...]
    onnx_nodes: tuple[str, ...]
    name_parts: tuple[str, ...]
    tactic: str | None = None

    @property
    def precision(self) -> str | None:
        floats = [t.precision for t in self.outputs if t.precision in _FLOATS]
        return floats[0] if floats else (self.outputs[0].precision if self.outputs else None)

    def nodes(self) -> tuple[str, ...]:
        return self.onnx_nodes or self.name_parts

    def to_json(self) -> dict:
        return {"name": self.name, "type": self.type, "precision": self.precision,
                "onnx_nodes": list(self.onnx_nodes), "tactic": self.tactic,
                "inputs": [t.to_json() for t in self.inputs], "outputs": [t.to_json() for t in self.outputs]}


@dataclass(frozen=True)
class LayerInfo:
    """An engine's layers as `--exportLayerInfo` wrote them. `detailed`: built with
    `--profilingVerbosity=detailed` (else the file holds layer names only: no tensors, no precisions)."""

    path: Path
    layers: tuple[EngineLayer, ...]
    bindings: tuple[str, ...]
    detailed: bool

    def layer_of_tensor(self, name: str) -> EngineLayer | None:
        """The layer that writes tensor `name` (None: no layer does — fused away, or an engine input)."""
        for layer in self.layers:
            if any(t.name == name for t in layer.outputs):
                return layer
        return None

    def layers_of_node(self, onnx_node: str) -> tuple[EngineLayer, ...]:
        return tuple(layer for layer in self.layers if onnx_node in layer.nodes())

    def precision_of_node(self, onnx_node: str) -> str | None:
        """The precision TensorRT ran ONNX node `onnx_node` in: of the compute layer built from it (a layer that
        is not a reformat), None where no layer names it."""
        layers = self.layers_of_node(onnx_node)
        compute = [la for la in layers if la.type.lower() not in ("reformat", "noop")] or list(layers)
        return compute[0].precision if compute else None

    def to_json(self) -> dict:
        return {"file": str(self.path), "detailed": self.detailed, "bindings": list(self.bindings),
                "layers": [la.to_json() for la in self.layers]}


def _layer_tensor(raw: dict) -> LayerTensor:
    fmt = raw.get("Format/Datatype")
    if fmt is None:  # TensorRT 11 splits the field (its IEngineInspector migration guide): "DataType", "Format"
        fmt = " ".join(str(raw[k]) for k in ("DataType", "Format") if raw.get(k))
    dims = raw.get("Dimensions")
    return LayerTensor(str(raw.get("Name", "")), str(fmt), _precision_of(str(raw.get("DataType") or fmt)),
                       tuple(int(d) for d in dims) if isinstance(dims, list) else None)


def _onnx_nodes(metadata: str) -> tuple[str, ...]:
    out = []
    for part in re.split("[\x1e\x1f]", metadata or ""):
        m = _ONNX_LAYER.match(part.strip())
        if m:
            out.append(m.group(1))
    return tuple(out)


def read_layer_info(path: str | os.PathLike) -> LayerInfo:
    """Read `trtexec --exportLayerInfo=PATH` (`printLayerInfo` in samples/common/sampleReporting.cpp writes
    `IEngineInspector::getEngineInformation(kJSON)`): {"Layers": [...], "Bindings": [...]} (TensorRT 11: "I/O
    Tensors" objects in place of "Bindings"). Layers of other optimization profiles (" [profile N]") are left
    out: the kit builds one. Control characters inside strings (the \\x1e/\\x1f of Metadata) are accepted."""
    p = existing(path, "layer information")
    try:
        doc = json.loads(p.read_text(encoding="utf-8", errors="surrogateescape"), strict=False)
        raw_layers = doc["Layers"]
        if not isinstance(raw_layers, list):
            raise TypeError("'Layers' is not a list")
        raw_bindings = doc.get("Bindings", doc.get("I/O Tensors", []))
        bindings = tuple(str(b["Name"] if isinstance(b, dict) else b) for b in raw_bindings)
        layers = []
        detailed = bool(raw_layers) and all(isinstance(la, dict) for la in raw_layers)
        for raw in raw_layers:
            if not isinstance(raw, dict):  # names only (--profilingVerbosity=layer_names_only, the default)
                raw = {"Name": str(raw)}
            name = str(raw["Name"])
            if _PROFILE_SUFFIX.search(name):
                continue
            parts = tuple(part.strip() for part in name.split(" + ") if part.strip())
            layers.append(EngineLayer(
                name=name, type=str(raw.get("LayerType", "")),
                inputs=tuple(_layer_tensor(t) for t in raw.get("Inputs", [])),
                outputs=tuple(_layer_tensor(t) for t in raw.get("Outputs", [])),
                onnx_nodes=_onnx_nodes(str(raw.get("Metadata", ""))), name_parts=parts,
                tactic=raw.get("TacticName") or raw.get("TacticValue")))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise BadInputError(f"{p} is not a complete trtexec layer-information file ({type(err).__name__}: "
                            f"{first_line(err, None)}); {RECOPY}") from None
    return LayerInfo(p, tuple(layers), bindings, detailed)


def _need_detail(info: LayerInfo, what: str) -> None:
    if not info.detailed:
        raise BadInputError(f"{info.path} holds layer names only, not {what}: build the engine with "
                            "--profilingVerbosity=detailed and export the layer information again")


@dataclass(frozen=True)
class PrecisionMismatch:
    """An ONNX compute node TensorRT ran in another precision than the ONNX file gives it."""

    node: str
    op_type: str
    onnx_precision: str
    trt_precision: str
    layer: str

    @property
    def message(self) -> str:
        return (f"TensorRT ran {self.node} in {self.trt_precision.upper()} although the ONNX keeps it in "
                f"{self.onnx_precision.upper()} (engine layer {self.layer!r})")

    def to_json(self) -> dict:
        return {"node": self.node, "op_type": self.op_type, "onnx_precision": self.onnx_precision,
                "trt_precision": self.trt_precision, "layer": self.layer, "message": self.message}


# ops that move or re-type data rather than compute: their precision is their neighbours'
_NOT_COMPUTE = {"Cast", "QuantizeLinear", "DequantizeLinear", "Constant", "ConstantOfShape", "Identity", "Shape",
                "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Gather", "Slice", "Concat", "Split",
                "Expand", "Size", "Range"}
_ONNX_PRECISION = {1: "fp32", 10: "fp16", 16: "bf16", 11: "fp64", 17: "fp8", 18: "fp8", 19: "fp8", 20: "fp8",
                   3: "int8", 23: "fp4", 22: "int4"}


def precision_mismatches(layer_info: LayerInfo, onnx_model) -> list[PrecisionMismatch]:
    """Each ONNX compute node whose precision in the file (its output's element type; INT8/FP8 where a
    DequantizeLinear feeds it, by the DQ's input type) differs from what TensorRT ran (`precision_of_node`; a
    layer fed an INT8 tensor counts as INT8 whatever it writes). Nodes no engine layer names are skipped
    (`unobservable` lists those tensors). `onnx_model`: a ModelProto or a path."""
    from cp_debug.graph.model import load_onnx
    from cp_debug.graph.plan import tensor_types

    _need_detail(layer_info, "layer precisions")
    model = load_onnx(onnx_model, check=False)
    types = tensor_types(model)
    for init in model.graph.initializer:
        types.setdefault(init.name, None)
    elem = {n: (t.tensor_type.elem_type if t is not None else None) for n, t in types.items()}
    init_types = {i.name: i.data_type for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    out = []
    for node in model.graph.node:
        if node.op_type in _NOT_COMPUTE or not node.name:
            continue
        dq = [producer[i] for i in node.input if i in producer and producer[i].op_type == "DequantizeLinear"]
        if dq:
            src = dq[0].input[0]
            want = _ONNX_PRECISION.get(elem.get(src) or init_types.get(src, 0))
        else:
            want = next((_ONNX_PRECISION.get(elem.get(o)) for o in node.output if elem.get(o)), None)
        layers = [la for la in layer_info.layers_of_node(node.name) if la.type.lower() not in ("reformat", "noop")]
        if want is None or not layers:
            continue
        layer = layers[0]
        ran = "int8" if any(t.precision == "int8" for t in layer.inputs) and want == "int8" else layer.precision
        if ran is not None and ran != want:
            out.append(PrecisionMismatch(node.name, node.op_type, want, ran, layer.name))
    return out


FUSED = "fused: not observable in this engine"


@dataclass(frozen=True)
class Unobservable:
    """Tensors of interest with no dump, by why: `fused` (no engine layer writes them: TensorRT fused them away),
    `missing` (an engine layer's output, yet no file holds it: the folder is incomplete), `ambiguous` (dumped,
    but the file cannot be told from another tensor's), `undetermined` (the layer information has no tensor
    names: built without --profilingVerbosity=detailed)."""

    fused: tuple[str, ...]
    missing: tuple[str, ...]
    ambiguous: tuple[str, ...] = ()
    undetermined: tuple[str, ...] = ()

    def reason(self, name: str) -> str | None:
        if name in self.fused:
            return FUSED
        if name in self.missing:
            return (f"written by an engine layer, but missing from the dump folder (a truncated copy? the folder is "
                    f"incomplete); {RECOPY}")
        if name in self.ambiguous:
            return "dumped, but its file name is also another tensor's (no tensor_summary.json to tell them apart)"
        if name in self.undetermined:
            return "no dump; the layer information has no tensors (build with --profilingVerbosity=detailed)"
        return None

    def to_json(self) -> dict:
        return {"fused": list(self.fused), "missing": list(self.missing), "ambiguous": list(self.ambiguous),
                "undetermined": list(self.undetermined), "fused_reason": FUSED}


def unobservable(tensor_names: Iterable[str], dumps: DebugDumps, layer_info: LayerInfo) -> Unobservable:
    """Sort the tensors of `tensor_names` that `dumps` does not hold by why (see `Unobservable`). Engine inputs
    (bindings no layer writes) are not listed: they are the kit's own inputs."""
    in_ambiguous = {n for owners in dumps.ambiguous.values() for n in owners}
    written = {t.name for la in layer_info.layers for t in la.outputs}
    fused, missing, ambiguous, undetermined = [], [], [], []
    for name in dict.fromkeys(tensor_names):
        if name in dumps.files or (name in layer_info.bindings and name not in written):
            continue
        if name in in_ambiguous:
            ambiguous.append(name)
        elif not layer_info.detailed:
            undetermined.append(name)
        elif name in written:
            missing.append(name)
        else:
            fused.append(name)
    return Unobservable(tuple(fused), tuple(missing), tuple(ambiguous), tuple(undetermined))
