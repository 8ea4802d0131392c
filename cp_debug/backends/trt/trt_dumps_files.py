"""What the readers of TensorRT's tools' files share: a file copied back from the target exists, else one line.

The engine that matters runs on the car's computer, where `trtexec` or `polygraphy` run and our stack does not.
What they write there comes back in the kit folder and is read by one module per producer, each file by the rules
of the code that wrote it (TensorRT's open-source `samples/common` for trtexec, polygraphy's own loader for its
results): `trt_dumps_numpy.py` (`--saveAllDebugTensors=numpy`), `trt_dumps_layer_info.py` (`--exportLayerInfo`),
`trt_dumps_outputs.py` (`--exportOutput`), `trt_dumps_polygraphy.py` (`polygraphy run … --save-outputs`).

A file that is missing, cut short or not what it claims to be is one `BadInputError` line naming it: nothing
half-read goes on to a comparison.
"""

from __future__ import annotations

import os
from pathlib import Path

from cp_debug.errors import BadInputError

RECOPY = "re-copy the folder from the target"


def existing(path: str | os.PathLike, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"{what} not found: {p}; {RECOPY}")
    return p
