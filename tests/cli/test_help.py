"""`cpdebug --version`, `--help` and every `cpdebug CMD --help`, in a fresh process: they work, and they load none of
the heavy libraries (torch, onnx, onnxruntime, numpy), so that help is instant and a missing backend is no
ImportError."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "onnx", "onnxruntime", "numpy", "pandas", "polygraphy", "matplotlib", "numba", "onnx_graphsurgeon",
         "transformers", "scipy")

# One process runs them all, as `cpdebug` does (main() on sys.argv), then says which heavy modules got imported.
SCRIPT = """
import json, sys
import typer
from cp_debug.cli.main import app, main

names = sorted(typer.main.get_command(app).commands)
codes = []
for args in [["--version"], ["-V"], ["--help"]] + [[name, "--help"] for name in names]:
    sys.argv = ["cpdebug", *args]
    try:
        main()
    except SystemExit as exit_:
        codes.append(exit_.code)
print("RESULT " + json.dumps({"commands": names, "codes": codes,
                              "loaded": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)

COMMANDS = ["backends", "bench", "bisect", "eval", "export", "extract", "fix", "infer", "keep-fp32", "lint",
            "quantize", "replay", "report", "scenes", "sensitivity", "serve", "sweep", "train", "trt-kit"]


def test_version_and_help_of_every_command_load_no_heavy_library():
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, cwd=root,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert result["commands"] == COMMANDS
    assert result["codes"] == [0] * (3 + len(COMMANDS))
    from importlib.metadata import version

    assert proc.stdout.startswith(f"cpdebug {version('cp-debug')}\n" * 2)  # --version and -V
    assert proc.stdout.count("Usage: cpdebug") == 1 + len(COMMANDS)
    for name in COMMANDS:
        assert f"Usage: cpdebug {name} [OPTIONS]" in proc.stdout, name
    assert result["loaded"] == [], f"--help imported {result['loaded']}"
