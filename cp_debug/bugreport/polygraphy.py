"""The bundle's Polygraphy files: inputs and reference outputs in Polygraphy's JSON, and the command lines.

`polygraphy run` re-checks the subgraph without cp_debug (ONNX Runtime, or TensorRT); repro.py stays the
verdict (Polygraphy's elementwise check is a little looser, see the command's comment).
"""

from __future__ import annotations

import re

import numpy as np

from cp_debug.compare.diff import Tolerance

_ORT_SHORT = {"CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "trt"}


def polygraphy_inputs(feed: dict) -> bytes:
    """Polygraphy's JSON for --load-inputs: a list of feed dicts (one iteration)."""
    from polygraphy.json import to_json

    return to_json([feed]).encode()


def polygraphy_outputs(ref: dict, reference: str) -> bytes | None:
    """The reference outputs as Polygraphy RunResults, for `polygraphy run ... --load-outputs`."""
    try:
        from polygraphy.comparator import RunResults
        from polygraphy.comparator.struct import IterationResult
    except ImportError:  # polygraphy without its comparator: the repro script does not need this file
        return None
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"reference-{reference}")
    rr = RunResults([(name, [IterationResult({k: np.asarray(v) for k, v in ref.items()}, runner_name=name)])])
    return rr.to_json().encode()


def polygraphy_cmd(tol: Tolerance, providers: list, with_outputs: bool) -> str:
    names = [p if isinstance(p, str) else p[0] for p in providers]
    short = " ".join(_ORT_SHORT.get(n, n) for n in names)
    check = (" --load-outputs reference_outputs.json --check-error-stat elemwise"
             f" --atol {tol.atol:g} --rtol {tol.rtol:g}") if with_outputs else ""
    return (
        "# Run inside this directory. Polygraphy compares with reference_outputs.json (the reference's values).\n"
        "# Its elementwise check fails an element only when it is beyond BOTH atol and rtol*|ref|, so it is a little\n"
        "# looser than cp_debug's |cand - ref| > atol + rtol*|ref| (what repro.py uses): trust repro.py's verdict.\n"
        f"polygraphy run subgraph.onnx --onnxrt --providers {short} --load-inputs inputs.json{check}\n"
        "# The same subgraph through TensorRT (it already holds the candidate's precision):\n"
        f"polygraphy run subgraph.onnx --trt --strongly-typed --load-inputs inputs.json{check}\n"
    )
