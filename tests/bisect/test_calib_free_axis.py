"""`--calib` on a model whose first axis is free (issue 115, item 4: no refusal of what runs). pythainlp's deepcut
(docs/trained-models.md, tenth stop) takes one row per character of a text (`input_1`: [unk__330, 21]): a text of 338
characters calibrates the model the judged one of 325 runs — ONNX Runtime's quantizer takes it as it is. cp_debug
read a calibration array only as a whole number of samples of the judged one's shape and refused it in one line
("has shape [338, 21], but one sample is [325, 21]"). An ONNX file's named or unknown first dimension now takes such an
array as one sample; a fixed one still says the shapes (tests/bisect/test_cli_user_inputs.py)."""

from __future__ import annotations

import json

import numpy as np
import onnx

from tests.cli_run import cpdebug


def test_a_calib_array_of_another_length_along_a_free_axis_is_one_sample(tmp_path):
    from tests.bisect.int8_concat_reader import build, samples

    model = build()  # x: ["n", 5, 4]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "n"
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "x.npz", x=samples(64, 2))
    np.savez(tmp_path / "calib.npz", x=samples(20, 1))  # 20 rows: no whole number of 64-row samples
    proc = cpdebug("bisect", "--onnx", tmp_path / "m.onnx", "--inputs", tmp_path / "x.npz", "--calib",
                   tmp_path / "calib.npz", "-b", "ort-cpu,ort-cpu-int8", "--json", tmp_path / "r.json", "--quiet")
    # before: exit 2, "--calib calib.npz: input 'x' has shape [20, 5, 4], but one sample is [64, 5, 4]"
    assert proc.returncode in (0, 1, 4), proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    stage = report["settings"]["backends"]["ort-cpu-int8"]["m"]
    assert stage["precision_transform"]["calibration_feeds"] == 1, stage


def test_a_whole_number_of_samples_along_a_free_axis_is_still_split(tmp_path):
    from cp_debug.bisect.subjects.feeds import calibration_feeds

    one = {"x": np.zeros((4, 5, 4), np.float32)}
    feeds, _ = calibration_feeds([{"x": np.ones((12, 5, 4), np.float32)}], one, "the model", "it", {"x": (None, 5, 4)})
    assert [f["x"].shape for f in feeds] == [(4, 5, 4)] * 3  # 3 samples of the judged one's length
    feeds, _ = calibration_feeds([{"x": np.ones((10, 5, 4), np.float32)}], one, "the model", "it", {"x": (None, 5, 4)})
    assert [f["x"].shape for f in feeds] == [(10, 5, 4)]  # one sample of its own length


def test_fix_reads_such_a_calib_array_as_one_sample_too():
    """`cpdebug fix --calib` reads it as bisect does (`samples.calibration.read_calib` with the model's declared
    shapes): before, fix on deepcut refused "[338, 21], but one sample is [36, 21]"."""
    import tempfile
    from pathlib import Path

    from cp_debug.bisect.subjects.feeds import declared_inputs
    from cp_debug.samples.calibration import read_calib
    from tests.bisect.int8_concat_reader import build, samples

    with tempfile.TemporaryDirectory() as d:
        np.savez(Path(d) / "calib.npz", x=samples(20, 1))
        feeds = read_calib([Path(d) / "calib.npz"], {"x": samples(64, 2)}, declared_inputs(build()))
    assert [f["x"].shape for f in feeds] == [(20, 5, 4)]
