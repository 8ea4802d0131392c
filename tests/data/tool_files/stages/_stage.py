"""What every stage script shares: its arguments (one JSON object on argv), the versions of the packages it ran
with, the Python warnings the tool raised, and the one `RESULT: {json}` line make.py reads back.

Stage scripts run inside a tool's own virtual environment (make.py's TOOLS), never in the test run; this file is
put on sys.path beside them and imports nothing outside the standard library at module level.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import json
import sys
import warnings


def args() -> dict:
    """The stage's arguments: the JSON object make.py passed as the first command-line argument."""
    return json.loads(sys.argv[1])


def versions(*dists: str) -> dict:
    """{distribution: version} of `dists` as this environment has them, and what `import onnxruntime` / `import
    onnx` really load (a venv's onnxruntime-gpu shadows the base's onnxruntime: the dist list alone would lie)."""
    out = {}
    for d in dists:
        try:
            out[d] = md.version(d)
        except md.PackageNotFoundError:
            pass
    for mod in ("onnx", "onnxruntime"):
        try:
            m = importlib.import_module(mod)
            in_venv = sys.prefix != sys.base_prefix and m.__file__.startswith(sys.prefix)
            where = "venv" if in_venv else "base"
            out[f"import {mod}"] = f"{m.__version__} ({where})"
        except Exception as e:  # noqa: BLE001 - recorded, not raised: a stage without ORT is still a stage
            out[f"import {mod}"] = f"unavailable: {type(e).__name__}"
    out["python"] = sys.version.split()[0]
    return out


class Recorder:
    """Collects the warnings raised inside a `with` block as 'Category: message' strings, deduplicated."""

    def __enter__(self):
        self._cm = warnings.catch_warnings(record=True)
        self._log = self._cm.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)
        seen = []
        for w in self._log:
            s = f"{w.category.__name__}: {str(w.message).strip()}"
            if s not in seen:
                seen.append(s)
        self.messages = seen
        return False


def result(**fields) -> None:
    """Print the stage's result line (the last line of stdout, read by make.py)."""
    sys.stdout.flush()
    print("RESULT: " + json.dumps(fields, default=str), flush=True)
