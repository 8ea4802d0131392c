"""Reader of `polygraphy run … --save-outputs FILE` (a RunResults: each iteration's outputs, with a TrtRunner's debug
tensors among them). Polygraphy is imported where it is used.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cp_debug.backends.trt.trt_dumps_files import RECOPY, existing
from cp_debug.errors import BadInputError, first_line


def read_polygraphy_results(path: str | os.PathLike) -> list[tuple[str, list[dict[str, np.ndarray]]]]:
    """The runs of `polygraphy run … --save-outputs PATH`: [(runner name, one {tensor: array} per iteration)].

    Read with polygraphy's own `RunResults.load` (polygraphy/comparator/struct.py, in every version from 0.49), so
    every file it saves is read as it reads it: a file (a path with an extension), or, for an extensionless
    `--save-outputs` (polygraphy >= 0.53 streams it), a folder of one RunResults per iteration, read here file by
    file in name order and joined by runner name, as 0.53's `RunResults.load_streaming` and `concat` do (they are
    absent before 0.53, so the folder is read the same way whichever polygraphy reads it). A TrtRunner's debug
    tensors come back among the outputs under their TensorRT names (polygraphy/backend/trt/runner.py: its debug
    listener's `debug_tensor_outputs` in 0.49.x, `polygraphy_debug_tensor_outputs` from 0.50); it skips BF16,
    FP8, INT4 and FP4 debug tensors with a warning, so those are absent here, never zero. No polygraphy up to
    0.53.6 turns the unfused tensors' debug state on (`--mark-unfused-tensors-as-debug-tensors` marks them at
    build only): a TrtRunner's file holds the engine's outputs and any `--mark-debug` tensors. Torch tensors in
    the file come back as numpy arrays.
    """
    from polygraphy.comparator import RunResults
    from polygraphy.exception import PolygraphyException
    from polygraphy.logger import G_LOGGER

    p = existing(path, "polygraphy results")
    try:
        with G_LOGGER.verbosity(G_LOGGER.CRITICAL + 1):  # its "Loading …" lines and the error we re-word
            if p.is_dir():
                files = sorted(p.glob("*.json"))  # json/serde.py list_iteration_files: zero-padded, name order
                if not files:
                    raise BadInputError(f"{p} holds no polygraphy per-iteration .json file; {RECOPY}")
                joined: dict[str, list] = {}
                for f in files:
                    for runner, iterations in RunResults.load(str(f)).items():
                        joined.setdefault(runner, []).extend(iterations)
                results = list(joined.items())
            else:
                results = list(RunResults.load(str(p)).items())
    except BadInputError:
        raise
    except (PolygraphyException, ValueError, KeyError, TypeError, AttributeError, EOFError, OSError) as err:
        # a cut JSON (ValueError), a JSON of another kind (PolygraphyException), a damaged array payload
        raise BadInputError(f"{p} is not a complete polygraphy RunResults ({type(err).__name__}: "
                            f"{first_line(err, None)}); {RECOPY}") from None
    runs = []
    for runner, iterations in results:
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
