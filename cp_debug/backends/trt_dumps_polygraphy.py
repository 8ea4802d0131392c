"""Reader of `polygraphy run … --save-outputs FILE` (a RunResults; with `--mark-unfused-tensors-as-debug-tensors`
its TrtRunner adds every debug tensor to each iteration's outputs). Polygraphy is imported where it is used.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cp_debug.backends.trt_dumps_files import RECOPY, existing
from cp_debug.errors import BadInputError, first_line


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

    p = existing(path, "polygraphy results")
    try:
        with G_LOGGER.verbosity(G_LOGGER.CRITICAL + 1):  # its "Loading …" lines and the error we re-word
            if p.is_dir():
                if not any(p.glob("*.json")):
                    raise BadInputError(f"{p} holds no polygraphy per-iteration .json file; {RECOPY}")
                results = RunResults.concat(list(RunResults.load_streaming(str(p))))
            else:
                results = RunResults.load(str(p))
    except BadInputError:
        raise
    except (PolygraphyException, ValueError, KeyError, TypeError, AttributeError, EOFError, OSError) as err:
        # a cut JSON (ValueError), a JSON of another kind (PolygraphyException), a damaged array payload
        raise BadInputError(f"{p} is not a complete polygraphy RunResults ({type(err).__name__}: "
                            f"{first_line(err, None)}); {RECOPY}") from None
    runs = []
    for runner, iterations in results.items():
        runs.append((str(runner), [{str(name): _as_numpy(arr, p, name) for name, arr in it.items()}
                                   for it in iterations]))
    if not runs:
        raise BadInputError(f"{p} holds no runner's results: was polygraphy run with --save-outputs? {RECOPY}")
    return runs


def _as_numpy(arr, path: Path, name: str) -> np.ndarray:
    if isinstance(arr, np.ndarray):
        return arr
    to_numpy = getattr(arr, "numpy", None)  # a torch tensor, without importing torch
    if callable(to_numpy):
        return np.asarray(arr.detach().cpu().numpy() if hasattr(arr, "detach") else to_numpy())
    raise BadInputError(f"{path}: output {name!r} is a {type(arr).__name__}, not an array; {RECOPY}")
