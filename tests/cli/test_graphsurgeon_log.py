"""onnx-graphsurgeon prints its warnings to stdout (`[W] Could not convert: FLOAT8E4M3FN …` on a float8 graph, and
once that the `colored` package is missing): while a command runs they go into logging and the report's
third-party warnings instead (cli/common/gs_log.py) — `bisect -b torch,ort-cpu-fp8 --json -` wrote two such lines in
front
of its JSON."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli_run import cpdebug

MODELS = Path(__file__).resolve().parents[1] / "bisect" / "user_files_models.py"


def test_graphsurgeons_warnings_stay_off_stdout_and_go_into_the_report():
    proc = cpdebug("bisect", "--torch", f"{MODELS}:healthy", "-b", "torch,ort-cpu-fp8", "--json", "-")
    assert proc.returncode in (0, 1, 4), proc.stderr[-2000:]
    assert "[W]" not in proc.stdout + proc.stderr
    report = json.loads(proc.stdout)  # the JSON alone on stdout
    said = [w for w in report["third_party_warnings"] if w["source"] == "logging onnx_graphsurgeon"]
    assert said and "FLOAT8E4M3FN" in said[0]["message"], report["third_party_warnings"]


def test_one_warning_that_names_object_ids_is_counted_once():
    """onnx-graphsurgeon names its tensors by object id ("[id: 139877616122256] Variable (x)"): the same warning of
    each new graph was a distinct message, nudenet's INT8 intervention listed ~100 of them in the report."""
    from cp_debug.cli.common.quiet import ThirdParty

    caught = ThirdParty()
    for ids in ((139877616122256, 139877601224272), (139877588358416, 139877704376208)):
        caught.add("logging onnx_graphsurgeon", "WARNING: Found distinct tensors that share the same name:\n"
                   + "\n".join(f"[id: {i}] Variable (r_unfolded)" for i in ids))
    caught.add("logging onnx_graphsurgeon", "WARNING: Found distinct tensors that share the same name:\n"
               "[id: 1] Variable (other)")
    assert [w.count for w in caught.warnings()] == [2, 1]
