"""Does ONNX Runtime load a deployed file as it is written? (issue 107, item 4)

A file is tried in a plain session made from its path (the bytes on disk, external data beside them, nothing
re-encoded: any size), CPU provider, graph optimisation off, before anything of cp_debug touches it. A refusal is the
runtime's verdict on the file, not a divergence: the run stops with ONNX Runtime's own first line (exit 3), because
whatever cp_debug ran instead — the CPU's float32-widened twin with float16 storage emulated (`ort_runner.half_mode`),
a graph re-typed by a transform — would be a file the runtime never takes.

The known cause is said with its cure: onnxconverter-common's `convert_float_to_float16` (which polygraphy's
`--fp-to-fp16` calls) retypes every float tensor to float16 but leaves a Cast(to=float)'s `to` as it was, so the
Cast still writes float32 into a graph typed float16 ("Type Error: Type (tensor(float16)) of output arg … of node
(/Cast)", or a Mul / Div "bound to different types" where the Cast's consumer meets float16), in the graph and in
the bodies it walks into; and an op it keeps in float32 that must read a Constant reads it through its Cast (a
Resize's empty `scales`). The whole cure is read from the file and run on the FP32 graph before it is said
(`fp16_converter_cure.py`): the converter's output with it loads, or the line says what the run gave.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_NODE = re.compile(r"(?:of node|in node|Node) \(([^)]*)\)")


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


def load_refusal(path: str | Path, shown: str | None = None, *, device: str = "cpu",
                 reference=None) -> Refusal | None:
    """ONNX Runtime's refusal of the file at `path` as written, None where it loads. `device`: where the candidate
    runs; on CUDA an op the CPU provider lacks is no refusal (the CUDA provider may hold it). `reference`: the FP32
    graph (ModelProto or path) a cure is run on before it is said (`fp16_converter_cure.tried`)."""
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
        return Refusal(shown or str(path), ort.__version__, said, _advice(path, said, reference))
    return None


def _said(text: str) -> str:
    """ORT's line without its status prefix and the path it repeats ("[ONNXRuntimeError] : 1 : FAIL : Load model
    from … failed:")."""
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    return re.sub(r"^Load model from .*? failed:", "", text).strip()


def _advice(path: str | Path, said: str, reference=None) -> str:
    """The cure where ORT's line names a node a float16 converter's known faults explain (`fp16_converter_cure.py`:
    a Cast(to=float) it left, or an op it keeps in float32 reading a Constant through its Cast), run on the FP32
    graph `reference` before it is said; else ""."""
    named = set(_NODE.findall(said))  # "Node (Loop.0) … of node (Cast.1)": a body's node said through its Loop
    if not named:
        return ""
    import onnx

    from cp_debug.backends.ort.fp16_converter_cure import ConverterCure, casts_to_float, cure_of, tried

    model = onnx.load(str(path), load_external_data=False)
    producer = {o: n for n in model.graph.node for o in n.output}
    said_of = [n for n in model.graph.node if n.name in named]
    feeding = [*said_of, *(producer[i] for n in said_of for i in n.input if i in producer)]
    # the Casts ORT's line names or that feed the node it names (a file typed without shape inference, polygraphy's
    # --fp-to-fp16, declares none of them float16), then every one the file declares so and the Constants
    cure = ConverterCure(tuple(dict.fromkeys(n.name for n in feeding if casts_to_float(n)))).merged(cure_of(model))
    if not cure or not ({*named, *(n.name for n in feeding)} & {*cure.casts, *cure.readers}):
        return ""
    cure, run = tried(cure, reference, _refused_model)
    return cure.line(run)


def _refused_model(model) -> str | None:
    """ONNX Runtime's line refusing `model` (a ModelProto, loaded from its bytes as `load_refusal` loads a file),
    None where it loads."""
    from cp_debug.errors import first_line
    from cp_debug.ort_sessions import open_session, session_options

    try:
        open_session(model.SerializeToString(), session_options(level="ORT_DISABLE_ALL", quiet=True))
    except Exception as err:  # noqa: BLE001 - what ONNX Runtime says of the file is the answer
        return _said(first_line(err, 400))
    return None
