"""Bug-report bundles that reproduce when the error accumulates: the window grows upstream from the first
divergent tensor until the candidate diverges on the reference's values (`cp_debug.bugreport.grow`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from onnx import numpy_helper

from cp_debug.bugreport.grow import STAGE_INPUT, grow_window
from cp_debug.compare.diff import Tolerance
from cp_debug.graph.session import run_all_outputs, run_ort
from tests.cli_run import cpdebug
from tests.report import models

ACCUMULATE = Path(__file__).with_name("accumulate.py")
CHAIN = [("Mul", 1.0)] * 8  # x → n0 … n7 → y


def _drift(model: onnx.ModelProto, feed=None) -> onnx.ModelProto:
    """A candidate whose every node is 0.1% off: the error grows with the number of nodes in the window."""
    m = onnx.ModelProto.FromString(model.SerializeToString())
    for init in m.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.001), init.name))
    return m


def _grow(rtol: float):
    model = models.chain(CHAIN)
    x = np.random.default_rng(0).uniform(1, 2, models.SHAPE).astype(np.float32)
    values = {"x": x, **run_all_outputs(gs.import_onnx(model), {"x": x})}  # the reference at every cut
    cuts = [(f"n{i}", f"t{i}") for i in range(7)]
    runs = []

    def run(m, feed):
        runs.append(len(m.graph.node))
        return run_ort(m, feed)

    growth = grow_window(model, "y", values["y"], cuts, lambda ts: {t: values[t] for t in ts}, ("x",), _drift, run,
                         Tolerance(atol=0.0, rtol=rtol))
    return growth, runs


def test_the_window_grows_to_the_smallest_start_that_diverges():
    # four drifting nodes give 1.001**4 - 1 = 4.0e-3 > 3.5e-3; three give 3.0e-3: the window is n4 … n7
    growth, runs = _grow(3.5e-3)
    w = growth.found
    assert w is not None and w.diverged and w.start == "n3"
    assert w.nodes == 4 and list(w.inputs) == ["t3"] and list(w.reference_outputs) == ["y"]
    assert [n.name for n in w.model.graph.node] == ["n4", "n5", "n6", "n7"]
    assert growth.whole.nodes == 8 and growth.whole.diverged and growth.trials[0].start == STAGE_INPUT
    assert not any(t.status != "ok" and t.nodes < 4 for t in growth.trials)  # every smaller window tried passed
    assert len(runs) <= 1 + 3 + 1  # the whole stage, then a binary search over 7 cuts


def test_nothing_is_found_when_the_whole_stage_stays_within_tolerance():
    growth, runs = _grow(1e-2)
    assert growth.found is None and not growth.whole.diverged and runs == [8]


def _repro(bundle: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # a fresh process: numpy + onnxruntime
    return subprocess.run([sys.executable, "repro.py"], cwd=bundle, env=env, capture_output=True, text=True,
                          timeout=300)


def _nodes_named(readme: str) -> int:
    m = re.search(r"holds (\d+) nodes?\*\*|feeds the stage \((\d+) nodes?\)", readme)
    assert m, readme
    return int(m.group(1) or m.group(2))


# ort,ort-cpu-fp16 runs in lockstep (values rounded to float16 at every cut: the window emulates that);
# torch,ort-cpu-fp16 runs the stage whole with its probes exposed (the window exposes the same tensors)
@pytest.mark.parametrize("backends", ["ort,ort-cpu-fp16", "torch,ort-cpu-fp16"])
def test_an_accumulated_fp16_error_gives_a_bundle_that_reproduces(tmp_path, backends):
    out = tmp_path / "bundle"
    proc = cpdebug("bisect", "--torch", f"{ACCUMULATE}:build", "--backends", backends, "--atol", "2e-2",
                    "--rtol", "0", "--bundle", out, "--quiet")
    assert proc.returncode == 1, proc.stderr[-2000:]
    readme = (out / "README.md").read_text()
    assert "does not diverge on its own" in readme and "Starts tried: from the stage's inputs" in readme
    n = _nodes_named(readme)
    sub = onnx.load(out / "subgraph.onnx")
    assert n == sum(node.op_type != "Cast" for node in sub.graph.node) and 2 <= n <= 20
    rep = _repro(out)
    assert rep.returncode == 1 and "REPRODUCED" in rep.stdout and "NOT REPRODUCED" not in rep.stdout, \
        rep.stdout + rep.stderr
    story = json.loads((out / "manifest.json").read_text())["settings"]["bundle"]
    assert story["root_cause"] and story["nodes"] == len(sub.graph.node)
    if backends.startswith("ort,"):
        assert (out / "subgraph_fp16.onnx").is_file() and "rounded every value crossing one of its cuts" in readme
    else:  # the whole stage ran with float16 storage emulated: the window holds that rounding as Cast pairs
        assert "as explicit Cast float32 → float16 → float32 pairs" in readme


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow
def test_the_centerpoint_fp16_bundle_reproduces(tmp_path):
    """The `tiny` preset (the demo's modules and stages on a quarter of its grid, 32 nodes in the window here): the
    point is that a real CenterPoint FP16 bundle grows to a window that reproduces, not the demo's size."""
    out = tmp_path / "bundle"
    # the element-wise tolerance: the random-weights model's FP16 rounding is within precision by the noise model
    proc = cpdebug("bisect", "--preset", "tiny", "--random-weights", "--backends", "torch,ort-cpu-fp16",
                    "--tolerance-mode", "fixed", "--bundle", out, "--quiet")
    assert proc.returncode == 1, proc.stderr[-2000:]
    readme = (out / "README.md").read_text()
    n = _nodes_named(readme)
    assert 1 <= n <= 40, readme
    rep = _repro(out)
    assert rep.returncode == 1 and "REPRODUCED" in rep.stdout, rep.stdout + rep.stderr
