"""Reader of trtexec's numpy debug-tensor dumps, with TensorRT's file-name mangling, for a `trt-*@KIT` backend.

`read_debug_dumps`: `trtexec --markUnfusedTensorsAsDebugTensors --saveAllDebugTensors=numpy[,summary]`, one
.npy per debug tensor, its file name mangled from the tensor's name; resolved back to the ONNX graph's names.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from cp_debug.backends.trt.trt_dumps_files import RECOPY, existing
from cp_debug.errors import BadInputError, first_line

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
# tensor_summary.json's fields written as they are, unescaped: a tensor's name (writeSummary) and the engine's
# (writeSummaryHeader); the file names and the command line go through escapeJsonString (debugTensorWriter.cpp)
_RAW_FIELD = re.compile(r'^(\s*"(?:name|engine_name)": ")(.*)(",)$', re.M)


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
        raise BadInputError(f"cannot read {path}: {first_line(err, None)}; {RECOPY}") from None
    except (ValueError, EOFError, SyntaxError) as err:
        raise BadInputError(f"{path} is not a complete .npy file ({first_line(err, None)}); {RECOPY}") from None
    if dtype.hasobject or fortran:
        raise BadInputError(f"{path} is not a dump trtexec writes (object or Fortran-ordered array); {RECOPY}")
    want = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = path.stat().st_size - offset
    if have != want:
        raise BadInputError(f"{path} is cut short or damaged: its header promises {want} bytes of data, the file "
                            f"holds {have}; {RECOPY}")
    return dtype.str, tuple(int(d) for d in shape), offset


def _read_npy(path: Path) -> np.ndarray:
    _npy_header(path)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise BadInputError(f"{path} is not a readable .npy file ({first_line(err, None)}); {RECOPY}") from None


def _read_summary(path: Path) -> dict[str, tuple[str, str]]:
    """numpy file name → (tensor name, TensorRT type) from trtexec's tensor_summary.json
    (`DebugTensorWriter::writeSummary`: {"metadata": {…}, "tensors": [{"name", "shape", "type", "statistics",
    "files": {"numpy": …}}]}; its footer is written when trtexec exits, so a run that died leaves it open). The
    names trtexec writes unescaped are escaped first, so a name holding `"` or `\\` reads as itself."""
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    text = _RAW_FIELD.sub(lambda m: m.group(1) + json.dumps(m.group(2))[1:-1] + m.group(3), text)
    try:
        doc = json.loads(text, strict=False)
        tensors = doc["tensors"]
        out = {}
        for t in tensors:
            numpy_file = (t.get("files") or {}).get("numpy")
            if numpy_file:
                out[numpy_file] = (str(t["name"]), str(t.get("type", "")))
        return out
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise BadInputError(f"{path} is not a complete trtexec tensor summary ({first_line(err, None)}); "
                            f"{RECOPY}") from None


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
    """Resolve the .npy files trtexec wrote in `folder` (`--saveAllDebugTensors=numpy,summary`, or `numpy` alone
    as older kits' scripts ran it) to `tensor_names`, the ONNX graph's tensor names.

    Each file is checked first (numpy's header reader; the data must be exactly as long as the header says). Its
    tensor is then named by trtexec's own `tensor_summary.json` where the run wrote one (`--saveAllDebugTensors=
    numpy,summary`: it lists each tensor's unmangled name beside its file), else by reversing `dump_file_name`:
    a file whose name several ONNX tensors would give is `ambiguous`, one that none would give `unknown`. The
    file's dtype must fit the suffix ("_to_float" files hold float32). Where the folder holds several inferences
    (each callback numbered anew), a tensor's first dump is kept.
    """
    root = existing(folder, "trtexec dump folder")
    if not root.is_dir():
        raise BadInputError(f"{root} is not a folder of trtexec dumps; {RECOPY}")
    paths = sorted((p for p in root.iterdir() if p.suffix == ".npy" and _PREFIX.match(p.name)),
                   key=lambda p: int(_PREFIX.match(p.name).group(1)))
    if not paths:
        raise BadInputError(f"{root} holds no trtexec numpy dump (NNNN_<tensor>.npy): was trtexec run with "
                            f"--saveAllDebugTensors=numpy,summary in it? {RECOPY}")
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
                                    f"{RECOPY}")
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
