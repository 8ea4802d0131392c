"""Reader of `trtexec --exportOutput=FILE`: the engine's outputs, which trtexec writes as text."""

from __future__ import annotations

import json
import os
import re

import numpy as np

from cp_debug.backends.trt.trt_dumps_files import RECOPY, existing
from cp_debug.errors import BadInputError, first_line

_NON_FINITE = re.compile(r"(?<![\w.])(-?)(nan|inf)(?![\w.])", re.I)
_FINAL_SHAPE = re.compile(r"Final shape is ([0-9x]*) reported by the output allocator\.\s*")


def read_trtexec_outputs(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The engine outputs `trtexec --exportOutput=PATH` wrote: `exportJSONOutput` (samples/common/
    sampleReporting.cpp) writes [{ "name" : …, "dimensions" : "AxBxC", "values" : [ … ] }, …] as text: values
    through `ostream <<` (six significant digits, so a reference check needs a matching tolerance; "nan"/"inf"
    bare), dimensions joined by "x" (`operator<<(Dims)`), and for an output-allocator output a "Final shape is …"
    line inside the values (`Binding::dump`), whose shape wins. Integer-only values come back int64, others
    float32."""
    p = existing(path, "trtexec output file")
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
                            f"{first_line(err, None)}); {RECOPY}") from None
    if not out:
        raise BadInputError(f"{p} holds no output; {RECOPY}")
    return out
