"""`--calib` on a model whose first axis is free (issue 115, item 4: no refusal of what runs). pythainlp's deepcut
(docs/trained-models.md, tenth stop) takes one row per character of a text (`input_1`: [unk__330, 21]): a text of 338
characters calibrates the model the judged one of 325 runs — ONNX Runtime's quantizer takes it as it is. cp_debug
read a calibration array only as a whole number of samples of the judged one's shape and refused it in one line
("has shape [338, 21], but one sample is [325, 21]"). An ONNX file's named or unknown first dimension now takes such an
array; a fixed one still says the shapes (tests/bisect/test_cli_user_inputs.py). Since 2026-12-01 (tenth stop) a
first axis the model leaves open is read as its batch axis: each row one sample (a batch of 40 images given as one
file was "calibrated on 1 sample" where the judged input was a batch of 16 or of 40)."""

from __future__ import annotations

import json

import numpy as np
import onnx

from tests.cli_run import cpdebug


def test_a_calib_array_of_another_length_along_a_free_axis_is_taken(tmp_path):
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
    assert stage["precision_transform"]["calibration_feeds"] == 20, stage  # its 20 rows, one sample each


def test_a_batch_along_a_free_axis_is_split_into_its_rows(tmp_path):
    from cp_debug.bisect.subjects.feeds import calibration_feeds

    one = {"x": np.zeros((4, 5, 4), np.float32)}
    feeds, _ = calibration_feeds([{"x": np.ones((12, 5, 4), np.float32)}], one, "the model", "it", {"x": (None, 5, 4)})
    assert [f["x"].shape for f in feeds] == [(1, 5, 4)] * 12  # 12 samples, one row each
    feeds, said = calibration_feeds([{"x": np.ones((10, 5, 4), np.float32)}], one, "the model", "it",
                                    {"x": (None, 5, 4)})
    assert [f["x"].shape for f in feeds] == [(1, 5, 4)] * 10  # before: one sample of its own length
    assert any("a batch of 10" in line and "10 samples" in line for line in said), said
    # a first axis the model fixes is no such batch: a whole number of the judged samples, as before
    feeds, _ = calibration_feeds([{"x": np.ones((12, 5, 4), np.float32)}], one, "the model", "it", {"x": (4, 5, 4)})
    assert [f["x"].shape for f in feeds] == [(4, 5, 4)] * 3


def test_fix_reads_such_a_calib_array_as_bisect_does():
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
    assert [f["x"].shape for f in feeds] == [(1, 5, 4)] * 20


def test_one_file_of_40_images_calibrates_on_40_samples_whatever_the_judged_batch(tmp_path):
    """The known bug (issue 115, tenth stop): `--calib` given one .npz of 40 images for a model whose batch axis is
    open, judged on a batch of 16 (or on the same 40), said "calibrated on 1 sample" and quantized from one feed."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 14 * 14, 4)).eval()
    torch.onnx.export(net, torch.zeros(1, 3, 16, 16), tmp_path / "m.onnx", input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "cal.npz", x=rng.normal(size=(40, 3, 16, 16)).astype(np.float32))
    for judged in (16, 40):
        np.savez(tmp_path / "x.npz", x=rng.normal(size=(judged, 3, 16, 16)).astype(np.float32))
        proc = cpdebug("bisect", "--onnx", tmp_path / "m.onnx", "--inputs", tmp_path / "x.npz", "--calib",
                       tmp_path / "cal.npz", "-b", "ort-cpu,ort-cpu-int8", "--json", tmp_path / "r.json")
        assert proc.returncode in (0, 1, 4), proc.stdout[-2000:] + proc.stderr[-2000:]
        stage = json.loads((tmp_path / "r.json").read_text())["settings"]["backends"]["ort-cpu-int8"]["m"]
        assert stage["precision_transform"]["calibration_feeds"] == 40, (judged, stage)  # before: 1
        assert "calibrated on 40 samples" in " ".join(proc.stdout.split()), proc.stdout[-3000:]
