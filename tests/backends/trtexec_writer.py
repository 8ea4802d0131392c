"""Files as trtexec writes them on the target, for tests that cannot run TensorRT (no GPU, no TensorRT here).

Each writer follows the TensorRT open-source code that writes the real file (NVIDIA/TensorRT, samples/common, read
at the TensorRT 11.1 release; the debug-tensor writer unchanged in substance since 10.13):

- `write_debug_dumps`: `DebugTensorWriter::processDebugTensor` (debugTensorWriter.cpp): one callback per debug
  tensor per inference, numbered from 0 over the whole run; `writeNumpy` picks the dtype and the "_to_float" /
  "_to_int8" suffix, `writeNumpyFile` writes the .npy (v1.0 header with a ", " after every dimension, padded with
  spaces by `16 - ((10 + len + 1) % 16)` — 16 when already aligned — then "\n"), the name through
  `genFilenameSafeString` (common.h); `writeSummary` the tensor_summary.json, written as text, not by a JSON
  library.
- `write_layer_info`: `--exportLayerInfo` is `IEngineInspector::getEngineInformation(kJSON)` (sampleReporting.cpp
  `printLayerInfo`); the inspector is closed source, so the layout is copied from real files: trtexec 10.x's output
  quoted in NVIDIA/TensorRT issue #4020 (with "StreamId", "Metadata") and the graph JSONs in trt-engine-explorer's
  tests/inputs; Metadata entries "[ONNX Layer: NAME]" joined by "\x1e" (trex's parser.py `fix_metadata`).
- `write_export_output`: `exportJSONOutput` (sampleReporting.cpp): values through `ostream <<`, dims "AxB".
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

# writeNumpy: TensorRT type → (numpy descr, suffix, the values written)
_AS = {"FLOAT": ("<f4", "", np.float32), "HALF": ("<f2", "", np.float16), "INT8": ("<i1", "", np.int8),
       "INT32": ("<i4", "", np.int32), "INT64": ("<i8", "", np.int64), "UINT8": ("|u1", "", np.uint8),
       "BOOL": ("|b1", "", np.bool_), "BF16": ("<f4", "_to_float", np.float32),
       "FP8": ("<f4", "_to_float", np.float32), "INT4": ("<i1", "_to_int8", np.int8)}


def gen_filename_safe_string(s: str, *, truncate: bool = True) -> str:
    """common.h genFilenameSafeString, byte by byte (10.12: no truncation)."""
    data = s.encode("utf-8")
    keep = b"._-,"

    def conv(part: bytes) -> str:
        return "".join(chr(b) if (chr(b).isascii() and chr(b).isalnum()) or b in keep else "_" for b in part)

    if not truncate or len(data) <= 150:
        return conv(data)
    half = (150 - 3) // 2
    return conv(data[:half]) + "..." + conv(data[-half:])


def numpy_file_bytes(values: np.ndarray, descr: str) -> bytes:
    """writeNumpyFile: magic, version 1.0, the header text, its padding, then the raw data."""
    header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': ("
    for d in values.shape:
        header += str(d) + ", "
    header += "), }"
    padding = 16 - ((10 + len(header) + 1) % 16)
    header += " " * padding + "\n"
    return (b"\x93NUMPY" + b"\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin-1")
            + np.ascontiguousarray(values).tobytes())


def _g(x: float) -> str:
    """C++ `ostream << float` at the default precision (6 significant digits, %g); nan/inf quoted as writeSummary
    quotes them."""
    if not np.isfinite(x):
        return '"' + ("nan" if np.isnan(x) else ("inf" if x > 0 else "-inf")) + '"'
    return f"{x:g}"


def write_debug_dumps(folder: Path, tensors: Sequence[tuple[str, np.ndarray, str]], *, runs: int = 1,
                      summary: bool = False, truncate: bool = True, engine_name: str = "Unnamed Network 0",
                      cmdline: str = "trtexec --loadEngine=model.engine --saveAllDebugTensors=numpy") -> list[Path]:
    """What `trtexec --saveAllDebugTensors=numpy[,summary]` leaves in its working folder after `runs` inferences:
    `tensors` are (TensorRT tensor name, values, TensorRT type) in callback order. Returns the .npy paths."""
    folder.mkdir(parents=True, exist_ok=True)
    index = 0
    written = []
    entries = []
    for _ in range(runs):
        for name, values, trt_type in tensors:
            descr, suffix, np_type = _AS[trt_type]
            data = np.asarray(values).astype(np_type)
            file_name = gen_filename_safe_string(f"{index:04d}_{name}{suffix}.npy", truncate=truncate)
            (folder / file_name).write_bytes(numpy_file_bytes(data, descr))
            written.append(folder / file_name)
            if summary:
                entries.append(_summary_entry(name, data, trt_type, file_name))
            index += 1
    if summary:
        text = ("{\n  \"metadata\": {\n    \"title\": \"Tensor Summary Report\",\n"
                "    \"time_generated\": \"2026-07-01T12:00:00+0000\",\n"
                f"    \"engine_name\": \"{engine_name}\",\n    \"command_line\": \"{cmdline}\"\n  }},\n"
                "  \"tensors\": [\n" + ",\n".join(entries) + "\n  ]\n}\n")
        (folder / "tensor_summary.json").write_text(text)
    return written


def _summary_entry(name: str, data: np.ndarray, trt_type: str, file_name: str) -> str:
    """writeSummary + processTensorSummary + printTensorElements for one tensor (name written unescaped, as the
    C++ code does)."""
    flat = data.reshape(-1)
    if data.dtype.kind == "f":
        vals = flat.astype(np.float32)
        with np.errstate(invalid="ignore"):  # inf + -inf sums to nan, which processTensorSummary quotes
            avg = float(vals.astype(np.float64).sum() / flat.size)
        stats = (f"        \"min\": {_g(float(vals.min()))},\n        \"max\": {_g(float(vals.max()))},\n"
                 f"        \"avg\": {_g(avg)},\n")
        show = [f"{float(v):g}" for v in _shown(vals)]
    else:
        vals = flat.astype(np.int64)
        stats = (f"        \"min\": {int(vals.min())},\n        \"max\": {int(vals.max())},\n"
                 f"        \"avg\": {float(vals.sum()) / flat.size:g},\n")
        show = [str(int(v)) for v in _shown(vals)]
    n = flat.size
    first = show[: min(5, n)]
    last = show[min(5, n):]
    elements = ", ".join(first) + (", ..." if n > 10 else "") + "".join(", " + v for v in last)
    shape = ", ".join(str(d) for d in data.shape)
    return ("  {\n" f"    \"name\": \"{name}\",\n" f"    \"shape\": [{shape}],\n" f"    \"type\": \"{trt_type}\",\n"
            "    \"statistics\": {\n" + stats + f"        \"elements\": \"{elements}\"\n" + "    }"
            + ",\n    \"files\": {\n" + f"      \"numpy\": \"{file_name}\"" + "\n    }" + "\n  }")


def _shown(vals: np.ndarray) -> np.ndarray:
    """The elements printTensorElements writes: the first five and, of a tensor of more than ten, the last five
    (all of one of ten or fewer) — formatted alone, not the whole tensor."""
    n = vals.size
    return np.concatenate([vals[:5], vals[n - 5:]]) if n > 10 else vals


def write_layer_info(path: Path, layers: Sequence[dict], bindings: Sequence[str], *, detailed: bool = True) -> None:
    """`layers`: {"name", "type", "inputs"/"outputs": [(name, dims, "Format/Datatype")], "onnx": [node names]}."""
    import json

    def tensor(t) -> str:
        name, dims, fmt = t
        return ("  {\n" f"    \"Name\": {json.dumps(name)},\n    \"Location\": \"Device\",\n"
                f"    \"Dimensions\": [{','.join(str(d) for d in dims)}],\n"
                f"    \"Format/Datatype\": {json.dumps(fmt)}\n  }}")

    if not detailed:
        text = '{"Layers": [' + "\n,".join(json.dumps(la["name"]) for la in layers) + "],\n"
    else:
        blocks = []
        for la in layers:
            meta = "\x1e".join(f"[ONNX Layer: {n}]" for n in la.get("onnx", ()))
            blocks.append("{\n" f"  \"Name\": {json.dumps(la['name'])},\n  \"LayerType\": \"{la['type']}\",\n"
                          "  \"Inputs\": [\n" + ",".join(tensor(t) for t in la["inputs"]) + "],\n"
                          "  \"Outputs\": [\n" + ",".join(tensor(t) for t in la["outputs"]) + "],\n"
                          f"  \"TacticValue\": \"0x0000000000000000\",\n  \"StreamId\": 0,\n"
                          f"  \"Metadata\": {json.dumps(meta)}\n}}")
        text = '{"Layers": [' + ",".join(blocks) + "],\n"
    text += '"Bindings": [' + "\n,".join(json.dumps(b) for b in bindings) + "]}"
    path.write_text(text)


def write_export_output(path: Path, outputs: Sequence[tuple[str, np.ndarray]]) -> None:
    """exportJSONOutput: sep "  " then ", "; values printed as C++ streams them (%g; bare nan / inf / -nan)."""
    def show(v) -> str:
        if isinstance(v, (bool, np.bool_)):
            return "1" if v else "0"
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        if np.isnan(v):
            return "-nan" if np.signbit(v) else "nan"
        if np.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{float(v):g}"

    text, sep = "[\n", "  "
    for name, arr in outputs:
        text += sep + '{ "name" : "' + name + '"\n'
        sep = ", "
        text += "  " + sep + '"dimensions" : "' + "x".join(str(d) for d in arr.shape) + '"\n'
        text += "  " + sep + '"values" : [ ' + sep.join(show(v) for v in arr.reshape(-1).tolist()) + " ]\n  }\n"
    path.write_text(text + "]\n")
