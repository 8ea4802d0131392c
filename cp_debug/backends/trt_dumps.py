"""Readers for what TensorRT's tools write on the target machine, so a `trt-*@KIT` backend can serve it.

The engine that matters runs on the car's computer, where `trtexec` or `polygraphy` run and our stack does not.
What they write there comes back in the kit folder and is read here, each file by the rules of the code that
wrote it (TensorRT's open-source `samples/common` for trtexec, polygraphy's own loader for its results):

- `read_debug_dumps`: `trtexec --markUnfusedTensorsAsDebugTensors --saveAllDebugTensors=numpy[,summary]`, one
  .npy per debug tensor, its file name mangled from the tensor's name; resolved back to the ONNX graph's names.
- `read_layer_info`: `trtexec --exportLayerInfo=FILE --profilingVerbosity=detailed` (the engine inspector's JSON):
  which engine layer computes which tensor, from which ONNX nodes, in which precision; `precision_mismatches`
  and `unobservable` read it against the ONNX graph and the dumps.
- `read_trtexec_outputs`: `trtexec --exportOutput=FILE`, the engine's outputs as text.
- `read_polygraphy_results`: `polygraphy run … --save-outputs FILE` (a RunResults; with
  `--mark-unfused-tensors-as-debug-tensors` its TrtRunner adds every debug tensor to each iteration's outputs).

A file that is missing, cut short or not what it claims to be is one `BadInputError` line naming it: nothing
half-read goes on to a comparison. Polygraphy is imported where it is used.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from cp_debug.errors import BadInputError, first_line

_RECOPY = "re-copy the folder from the target"



def _existing(path: str | os.PathLike, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"{what} not found: {p}; {_RECOPY}")
    return p


# -- trtexec numpy debug-tensor dumps ------------------------------------------------------------------------------
# TensorRT's samples/common/common.h, genFilenameSafeString: characters kept as they are, the length limit (TensorRT
# >= 10.13; 10.12 did not truncate) and the half kept on each side of the "...".
_SAFE_PUNCTUATION = "._-,"
_MAX_NAME = 150
_HALF = (_MAX_NAME - 3) // 2  # 73
# samples/common/debugTensorWriter.cpp, writeNumpy: the numpy dtype written per TensorRT type, and the suffix of the
# types it converts first (BF16, FP8, FP4 to float32: "_to_float"; INT4 to int8: "_to_int8"). E8M0 is not written.
_NUMPY_OF = {"BOOL": ("|b1", ""), "INT8": ("<i1", ""), "INT32": ("<i4", ""), "INT64": ("<i8", ""),
             "UINT8": ("|u1", ""), "HALF": ("<f2", ""), "FLOAT": ("<f4", ""), "BF16": ("<f4", "_to_float"),
             "FP8": ("<f4", "_to_float"), "FP4": ("<f4", "_to_float"), "INT4": ("<i1", "_to_int8")}
_ALIASES = {"float32": "FLOAT", "fp32": "FLOAT", "float16": "HALF", "fp16": "HALF", "bfloat16": "BF16",
            "bf16": "BF16", "int8": "INT8", "int32": "INT32", "int64": "INT64", "uint8": "UINT8", "bool": "BOOL",
            "fp8": "FP8", "float8": "FP8", "fp4": "FP4", "int4": "INT4"}
# what a file's dtype tells of the type TensorRT held, by suffix (the summary, where present, says it exactly)
_HELD = {("<f4", ""): "FLOAT", ("<f2", ""): "HALF", ("|b1", ""): "BOOL", ("<i1", ""): "INT8", ("<i4", ""): "INT32",
         ("<i8", ""): "INT64", ("|u1", ""): "UINT8", ("<f4", "_to_float"): "BF16|FP8|FP4",
         ("<i1", "_to_int8"): "INT4"}
_PREFIX = re.compile(r"^(\d{4,})_")
SUMMARY_FILE = "tensor_summary.json"


def mangle(name: str, *, truncate: bool = True) -> str:
    """A name as TensorRT's `genFilenameSafeString` (samples/common/common.h) makes it a file name: every byte that
    is not ASCII alphanumeric nor one of `._-,` becomes `_`; a result longer than 150 characters keeps its first
    and last 73 around "..." (`truncate=False`: TensorRT 10.12, which did not shorten)."""
    data = name.encode("utf-8")  # the C++ code walks the std::string's bytes, so one non-ASCII char is several `_`

    def safe(part: bytes) -> str:
        return "".join(chr(b) if chr(b).isascii() and (chr(b).isalnum() or chr(b) in _SAFE_PUNCTUATION) else "_"
                       for b in part)

    if not truncate or len(data) <= _MAX_NAME:
        return safe(data)
    return safe(data[:_HALF]) + "..." + safe(data[-_HALF:])


def _trt_type(dtype: str) -> str:
    key = _ALIASES.get(dtype.lower(), dtype.upper())
    if key not in _NUMPY_OF:
        raise ValueError(f"TensorRT writes no numpy dump for a tensor of type {dtype!r}")
    return key


def dump_file_name(index: int, name: str, dtype: str, *, truncate: bool = True) -> str:
    """The file trtexec writes for the `index`-th debug-tensor callback of a run (0-based, counted over every
    inference of the run) of tensor `name` held in `dtype` (TensorRT's type name, "HALF", or numpy's, "float16"):
    `DebugTensorWriter::processDebugTensor` → `writeNumpy` in samples/common/debugTensorWriter.cpp, i.e.
    genFilenameSafeString(f"{index:04d}_" + name [+ "_to_float" / "_to_int8"] + ".npy")."""
    suffix = _NUMPY_OF[_trt_type(dtype)][1]
    return mangle(f"{index:04d}_{name}{suffix}.npy", truncate=truncate)


@dataclass(frozen=True)
class DumpFile:
    """One .npy trtexec wrote: its callback index, the dtype and shape in its header, the TensorRT type it held."""

    path: Path
    index: int
    descr: str
    shape: tuple[int, ...]
    held: str  # TensorRT's type name ("HALF"); "BF16|FP8|FP4" where only the file's "_to_float" tells

    def to_json(self) -> dict:
        return {"file": self.path.name, "index": self.index, "dtype": self.descr, "shape": list(self.shape),
                "tensorrt_type": self.held}


@dataclass(frozen=True)
class DebugDumps:
    """A trtexec dump folder resolved against an ONNX graph's tensor names.

    `files`: ONNX tensor → its dump (the first inference's, where the run dumped several); `ambiguous`: file name →
    the ONNX tensors it may hold (mangling is many-to-one: `/a/b` and `_a_b` give one file name; so does the
    truncation of long names), never guessed; `unknown`: files that are no ONNX tensor of the graph (TensorRT's own
    tensors, or another graph). `dtypes`: ONNX tensor → the TensorRT type it was dumped from. `runs`: how many
    inferences the folder holds (trtexec numbers every callback of every inference: run it with
    `--iterations=1 --warmUp=0 --duration=0` for one).
    """

    folder: Path
    files: dict[str, Path]
    ambiguous: dict[str, tuple[str, ...]]
    unknown: tuple[str, ...]
    dtypes: dict[str, str]
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    runs: int = 1
    resolved_by: str = "file names"  # or "tensor_summary.json"

    def load(self, name: str) -> np.ndarray:
        """The dumped array of ONNX tensor `name`; float16 comes back as float32 (what the comparisons take; the
        dumped type stays in `dtypes`)."""
        if name not in self.files:
            why = ("its file cannot be told from another's (see `ambiguous`)"
                   if any(name in c for c in self.ambiguous.values()) else "no file in the folder holds it")
            raise BadInputError(f"no dump of {name!r} in {self.folder}: {why}")
        arr = _read_npy(self.files[name])
        return arr.astype(np.float32) if arr.dtype == np.float16 else arr

    def to_json(self) -> dict:
        return {"folder": str(self.folder), "resolved_by": self.resolved_by, "runs": self.runs,
                "files": {k: v.name for k, v in self.files.items()},
                "dtypes": dict(self.dtypes), "shapes": {k: list(v) for k, v in self.shapes.items()},
                "ambiguous": {k: list(v) for k, v in self.ambiguous.items()}, "unknown": list(self.unknown)}


def _npy_header(path: Path) -> tuple[str, tuple[int, ...], int]:
    """(descr, shape, data offset) of an .npy, checked against the file's size: numpy's own header reader."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            version = fmt.read_magic(f)
            read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"npy format version {version[0]}.{version[1]}, trtexec writes 1.0")
            shape, fortran, dtype = read_header(f, max_header_size=1 << 20)
            offset = f.tell()
    except OSError as err:
        raise BadInputError(f"cannot read {path}: {first_line(err, None)}; {_RECOPY}") from None
    except (ValueError, EOFError, SyntaxError) as err:
        raise BadInputError(f"{path} is not a complete .npy file ({first_line(err, None)}); {_RECOPY}") from None
    if dtype.hasobject or fortran:
        raise BadInputError(f"{path} is not a dump trtexec writes (object or Fortran-ordered array); {_RECOPY}")
    want = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = path.stat().st_size - offset
    if have != want:
        raise BadInputError(f"{path} is cut short or damaged: its header promises {want} bytes of data, the file "
                            f"holds {have}; {_RECOPY}")
    return dtype.str, tuple(int(d) for d in shape), offset


def _read_npy(path: Path) -> np.ndarray:
    _npy_header(path)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise BadInputError(f"{path} is not a readable .npy file ({first_line(err, None)}); {_RECOPY}") from None


def _read_summary(path: Path) -> dict[str, tuple[str, str]]:
    """numpy file name → (tensor name, TensorRT type) from trtexec's tensor_summary.json
    (`DebugTensorWriter::writeSummary`: {"metadata": {…}, "tensors": [{"name", "shape", "type", "statistics",
    "files": {"numpy": …}}]}; its footer is written when trtexec exits, so a run that died leaves it open)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8", errors="surrogateescape"), strict=False)
        tensors = doc["tensors"]
        out = {}
        for t in tensors:
            numpy_file = (t.get("files") or {}).get("numpy")
            if numpy_file:
                out[numpy_file] = (str(t["name"]), str(t.get("type", "")))
        return out
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise BadInputError(f"{path} is not a complete trtexec tensor summary ({first_line(err, None)}); "
                            f"{_RECOPY}") from None


class _Candidates:
    """ONNX tensor names by the file-name bodies trtexec would make of them (see `dump_file_name`)."""

    def __init__(self, names: Iterable[str]):
        self.names = tuple(dict.fromkeys(names))
        self.whole: dict[str, set[tuple[str, str]]] = {}  # mangled name + suffix (untruncated) → (name, suffix)
        for n in self.names:
            for suffix in ("", "_to_float", "_to_int8"):
                self.whole.setdefault(mangle(n + suffix, truncate=False), set()).add((n, suffix))
        self._cut: dict[int, dict[tuple[str, str], set[tuple[str, str]]]] = {}

    def cut(self, prefix_len: int) -> dict[tuple[str, str], set[tuple[str, str]]]:
        """(head, tail) of the truncated file names of a `prefix_len`-long index prefix → (name, suffix)."""
        if prefix_len not in self._cut:
            table: dict[tuple[str, str], set[tuple[str, str]]] = {}
            for body, owners in self.whole.items():
                full = "x" * prefix_len + body + ".npy"
                if len(full) > _MAX_NAME:
                    table.setdefault((full[prefix_len:_HALF], full[-_HALF:]), set()).update(owners)
            self._cut[prefix_len] = table
        return self._cut[prefix_len]

    def of(self, file_name: str) -> set[tuple[str, str]]:
        m = _PREFIX.match(file_name)
        if not m or not file_name.endswith(".npy"):
            return set()
        p = len(m.group(0))
        found = set(self.whole.get(file_name[p:-4], ()))
        if len(file_name) == 2 * _HALF + 3 and file_name[_HALF:_HALF + 3] == "...":
            found |= self.cut(p).get((file_name[p:_HALF], file_name[_HALF + 3:]), set())
        return found


def read_debug_dumps(folder: str | os.PathLike, tensor_names: Iterable[str]) -> DebugDumps:
    """Resolve the .npy files trtexec wrote in `folder` (`--saveAllDebugTensors=numpy`) to `tensor_names`, the
    ONNX graph's tensor names.

    Each file is checked first (numpy's header reader; the data must be exactly as long as the header says). Its
    tensor is then named by trtexec's own `tensor_summary.json` where the run wrote one (`--saveAllDebugTensors=
    numpy,summary`: it lists each tensor's unmangled name beside its file), else by reversing `dump_file_name`:
    a file whose name several ONNX tensors would give is `ambiguous`, one that none would give `unknown`. The
    file's dtype must fit the suffix ("_to_float" files hold float32). Where the folder holds several inferences
    (each callback numbered anew), a tensor's first dump is kept.
    """
    root = _existing(folder, "trtexec dump folder")
    if not root.is_dir():
        raise BadInputError(f"{root} is not a folder of trtexec dumps; {_RECOPY}")
    paths = sorted((p for p in root.iterdir() if p.suffix == ".npy" and _PREFIX.match(p.name)),
                   key=lambda p: int(_PREFIX.match(p.name).group(1)))
    if not paths:
        raise BadInputError(f"{root} holds no trtexec numpy dump (NNNN_<tensor>.npy): was trtexec run with "
                            f"--saveAllDebugTensors=numpy in it? {_RECOPY}")
    dumps = []
    for p in paths:
        descr, shape, _ = _npy_header(p)
        dumps.append(DumpFile(p, int(_PREFIX.match(p.name).group(1)), descr, shape, ""))
    known = set(dict.fromkeys(tensor_names))
    summary_path = root / SUMMARY_FILE
    owners: dict[str, set[tuple[str, str]]] = {}
    held: dict[str, str] = {}
    if summary_path.is_file():
        summary = _read_summary(summary_path)
        for d in dumps:
            if d.path.name not in summary:
                raise BadInputError(f"{d.path.name} is not in {summary_path.name}: the folder mixes two runs; "
                                    f"{_RECOPY}")
            name, trt_type = summary[d.path.name]
            owners[d.path.name] = {(name, "")} if name in known else set()
            held[d.path.name] = trt_type
        resolved_by = SUMMARY_FILE
    else:
        candidates = _Candidates(known)
        for d in dumps:
            fits = {(n, s) for n, s in candidates.of(d.path.name) if (d.descr, s) in _HELD}
            owners[d.path.name] = fits
            suffixes = {s for _, s in fits}
            held[d.path.name] = _HELD.get((d.descr, suffixes.pop() if len(suffixes) == 1 else ""), d.descr)
        resolved_by = "file names"
    files: dict[str, Path] = {}
    dtypes: dict[str, str] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    ambiguous: dict[str, tuple[str, ...]] = {}
    unknown: list[str] = []
    seen: dict[str, int] = {}
    for d in dumps:
        names = sorted({n for n, _ in owners[d.path.name]})
        if not names:
            unknown.append(d.path.name)
        elif len(names) > 1:
            ambiguous[d.path.name] = tuple(names)
        else:
            name = names[0]
            seen[name] = seen.get(name, 0) + 1
            if name not in files:
                files[name], dtypes[name], shapes[name] = d.path, held[d.path.name], d.shape
    return DebugDumps(root, files, ambiguous, tuple(unknown), dtypes, shapes,
                      runs=max(seen.values(), default=1), resolved_by=resolved_by)


# -- trtexec --exportLayerInfo (the engine inspector's JSON) ------------------------------------------------------
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
    p = _existing(path, "layer information")
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
                            f"{first_line(err, None)}); {_RECOPY}") from None
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
                    f"incomplete); {_RECOPY}")
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


# -- trtexec --exportOutput ----------------------------------------------------------------------------------------
_NON_FINITE = re.compile(r"(?<![\w.])(-?)(nan|inf)(?![\w.])", re.I)
_FINAL_SHAPE = re.compile(r"Final shape is ([0-9x]*) reported by the output allocator\.\s*")


def read_trtexec_outputs(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The engine outputs `trtexec --exportOutput=PATH` wrote: `exportJSONOutput` (samples/common/
    sampleReporting.cpp) writes [{ "name" : …, "dimensions" : "AxBxC", "values" : [ … ] }, …] as text: values
    through `ostream <<` (six significant digits, so a reference check needs a matching tolerance; "nan"/"inf"
    bare), dimensions joined by "x" (`operator<<(Dims)`), and for an output-allocator output a "Final shape is …"
    line inside the values (`Binding::dump`), whose shape wins. Integer-only values come back int64, others
    float32."""
    p = _existing(path, "trtexec output file")
    try:
        text = p.read_text(encoding="utf-8", errors="surrogateescape")
        finals: dict[int, str] = {}

        def note_final(m: re.Match) -> str:
            finals[len(finals)] = m.group(1)
            return f'"__final_shape__{len(finals) - 1}", '

        text = _FINAL_SHAPE.sub(note_final, text)
        fixed = []
        for line in text.splitlines():
            if '"values"' in line and "[" in line:
                head, _, rest = line.partition("[")
                rest = _NON_FINITE.sub(lambda m: ("-" if m.group(1) else "") + ("NaN" if m.group(2).lower()
                                                                                == "nan" else "Infinity"), rest)
                line = head + "[" + rest.replace("-NaN", "NaN")
            fixed.append(line)
        doc = json.loads("\n".join(fixed), strict=False)
        if not isinstance(doc, list):
            raise TypeError("not a list of outputs")
        out = {}
        for entry in doc:
            values = list(entry["values"])
            dims = str(entry["dimensions"])
            if values and isinstance(values[0], str) and values[0].startswith("__final_shape__"):
                dims = finals[int(values.pop(0).rsplit("_", 1)[1])]
            shape = tuple(int(d) for d in dims.split("x")) if dims else ()
            ints = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
            arr = np.asarray(values, dtype=np.int64 if ints and values else np.float32)
            if arr.size != int(np.prod(shape, dtype=np.int64)):
                raise ValueError(f"output {entry['name']!r} holds {arr.size} values for dimensions {dims!r}")
            out[str(entry["name"])] = arr.reshape(shape)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as err:
        raise BadInputError(f"{p} is not a complete trtexec --exportOutput file ({type(err).__name__}: "
                            f"{first_line(err, None)}); {_RECOPY}") from None
    if not out:
        raise BadInputError(f"{p} holds no output; {_RECOPY}")
    return out


# -- polygraphy RunResults ---------------------------------------------------------------------------------------
def read_polygraphy_results(path: str | os.PathLike) -> list[tuple[str, list[dict[str, np.ndarray]]]]:
    """The runs of `polygraphy run … --save-outputs PATH`: [(runner name, one {tensor: array} per iteration)].

    Read with polygraphy's own `RunResults.load` (polygraphy/comparator/struct.py), so every format it saves
    is read as it reads it: a file (a path with an extension) or, for an extensionless `--save-outputs`, a
    folder of one JSON per iteration (`RunResults.load_streaming`, joined in index order). A TrtRunner run
    with `--mark-unfused-tensors-as-debug-tensors` / `--mark-debug` returns the debug tensors among the
    outputs under their TensorRT names (polygraphy/backend/trt/runner.py: its debug listener's
    `polygraphy_debug_tensor_outputs`); it skips BF16, FP8, INT4 and FP4 debug tensors with a warning, so
    those are absent here, never zero. Torch tensors in the file come back as numpy arrays.
    """
    from polygraphy.comparator import RunResults
    from polygraphy.exception import PolygraphyException
    from polygraphy.logger import G_LOGGER

    p = _existing(path, "polygraphy results")
    try:
        with G_LOGGER.verbosity(G_LOGGER.CRITICAL + 1):  # its "Loading …" lines and the error we re-word
            if p.is_dir():
                if not any(p.glob("*.json")):
                    raise BadInputError(f"{p} holds no polygraphy per-iteration .json file; {_RECOPY}")
                results = RunResults.concat(list(RunResults.load_streaming(str(p))))
            else:
                results = RunResults.load(str(p))
    except BadInputError:
        raise
    except (PolygraphyException, ValueError, KeyError, TypeError, AttributeError, EOFError, OSError) as err:
        # a cut JSON (ValueError), a JSON of another kind (PolygraphyException), a damaged array payload
        raise BadInputError(f"{p} is not a complete polygraphy RunResults ({type(err).__name__}: "
                            f"{first_line(err, None)}); {_RECOPY}") from None
    runs = []
    for runner, iterations in results.items():
        runs.append((str(runner), [{str(name): _as_numpy(arr, p, name) for name, arr in it.items()}
                                   for it in iterations]))
    if not runs:
        raise BadInputError(f"{p} holds no runner's results: was polygraphy run with --save-outputs? {_RECOPY}")
    return runs


def _as_numpy(arr, path: Path, name: str) -> np.ndarray:
    if isinstance(arr, np.ndarray):
        return arr
    to_numpy = getattr(arr, "numpy", None)  # a torch tensor, without importing torch
    if callable(to_numpy):
        return np.asarray(arr.detach().cpu().numpy() if hasattr(arr, "detach") else to_numpy())
    raise BadInputError(f"{path}: output {name!r} is a {type(arr).__name__}, not an array; {_RECOPY}")
