"""Does ONNX Runtime load a deployed file as it is written? (issue 107, item 4)

A file is tried in a plain session made from its path (the bytes on disk, external data beside them, nothing
re-encoded: any size), CPU provider, graph optimisation off, before anything of cp_debug touches it. A refusal is the
runtime's verdict on the file, not a divergence: the run stops with ONNX Runtime's own first line (exit 3), because
whatever cp_debug ran instead — the CPU's float32-widened twin with float16 storage emulated (`ort_runner.half_mode`),
a graph re-typed by a transform — would be a file the runtime never takes.

The known cause is said with its cure: onnxconverter-common's `convert_float_to_float16` (which polygraphy's
`--fp-to-fp16` calls) retypes every float tensor to float16 but leaves a Cast(to=float)'s `to` as it was, so the
Cast still writes float32 into a graph typed float16 ("Type Error: Type (tensor(float16)) of output arg … of node
(/Cast)", or a Mul / Div "bound to different types" where the Cast's consumer meets float16).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_NODE = re.compile(r"(?:of node|in node) \(([^)]*)\)")


@dataclass(frozen=True)
class Refusal:
    """ONNX Runtime's refusal of one file: its version, its first line, and what to do where the cause is known."""

    file: str
    version: str
    said: str
    advice: str = ""

    def line(self, what: str) -> str:
        """`<what>: <file>: ONNX Runtime <version> cannot load this file: <its first line> (<what to do>)`."""
        todo = self.advice or ("export or convert it again with a tool whose output ONNX Runtime loads; cp_debug "
                               "never runs a repaired copy in its place")
        return f"{what}: {self.file}: ONNX Runtime {self.version} cannot load this file: {self.said} — {todo}"


def load_refusal(path: str | Path, shown: str | None = None, *, device: str = "cpu") -> Refusal | None:
    """ONNX Runtime's refusal of the file at `path` as written, None where it loads. `device`: where the candidate
    runs; on CUDA an op the CPU provider lacks is no refusal (the CUDA provider may hold it)."""
    import onnxruntime as ort

    from cp_debug.backends.ort.ort_session import ort_errors
    from cp_debug.errors import first_line

    from cp_debug.ort_sessions import loaded_as_written, open_session, session_options

    if loaded_as_written(path):  # a CPU session of this very file already loaded in this run: no second one
        return None
    try:
        open_session(str(path), session_options(level="ORT_DISABLE_ALL", quiet=True))
    except ort_errors("NotImplemented") as err:
        if device != "cpu":
            return None
        return Refusal(shown or str(path), ort.__version__, _said(first_line(err, 400)))
    except Exception as err:  # noqa: BLE001 - what ONNX Runtime says of the file is the finding
        said = _said(first_line(err, 400))
        return Refusal(shown or str(path), ort.__version__, said, _advice(path, said))
    return None


def _said(text: str) -> str:
    """ORT's line without its status prefix and the path it repeats ("[ONNXRuntimeError] : 1 : FAIL : Load model
    from … failed:")."""
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    return re.sub(r"^Load model from .*? failed:", "", text).strip()


def _advice(path: str | Path, said: str) -> str:
    """The cure where ORT's line names a type clash at a Cast(to=float) a float16 converter left (module
    docstring), else ""."""
    if "Type Error" not in said and "bound to different types" not in said:
        return ""
    named = _NODE.search(said)
    if named is None:
        return ""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    by_name = {n.name: n for n in model.graph.node}
    producer = {o: n for n in model.graph.node for o in n.output}
    node = by_name.get(named.group(1))
    if node is None:
        return ""
    def to_float(n) -> bool:
        return n.op_type == "Cast" and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute)

    feeding = [node] if node.op_type == "Cast" else [producer[i] for i in node.input if i in producer]
    # and every other Cast(to=float) the converter declared float16 (it names one at a time)
    declared = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    stale = [n for n in model.graph.node if to_float(n) and declared.get(n.output[0]) == onnx.TensorProto.FLOAT16]
    casts = list(dict.fromkeys(n.name for n in [*feeding, *stale] if to_float(n)))
    if not casts:
        return ""
    listed = ", ".join(repr(c) for c in casts)
    return (f"Cast {listed} still writes float32 in a graph its FP16 converter typed float16 (onnxconverter-common's "
            f"convert_float_to_float16, which polygraphy's --fp-to-fp16 runs, keeps a Cast's `to`): convert the FP32 "
            f"file again with convert_float_to_float16(model, keep_io_types=True, node_block_list=[{listed}]), or "
            "export the model with that cast in float16")
