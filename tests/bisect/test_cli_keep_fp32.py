"""`cpdebug keep-fp32` (the CLI, run in process): the set found, its `--keep-fp32` line, JSON, exit codes 0/1/2/3."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.bisect.exported import exported
from tests.cli_run import cpdebug as run_cli

HERE = Path(__file__).parent
CONCAT = f"{HERE / 'fp16_planted.py'}:fp16_overflow_concat"


def cpdebug(*args):
    return run_cli("keep-fp32", *args)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The planted concat overflow as ONNX + inputs on disk."""
    import onnx

    model, feed = exported("fp16_planted.py", "fp16_overflow_concat")
    out = tmp_path_factory.mktemp("keep_fp32")
    onnx.save(model, str(out / "model.onnx"))
    np.savez(out / "inputs.npz", **feed)
    return out


def one_error_line(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("cpdebug: error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_found_set_is_printed_in_keep_fp32_form_and_written_as_json(files, tmp_path):
    proc = cpdebug("--onnx", files / "model.onnx", "--inputs", files / "inputs.npz", "--json", tmp_path / "k.json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "k.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert data["schema"] == "cp_debug.keep_fp32/1" and data["status"] == "found"
    keep = data["keep"]
    assert keep and all(k.startswith("/body/body.2/") or k == "/body/body.3/body.3.0/Conv" for k in keep)
    assert data["steps"][0] == {**data["steps"][0], "phase": "none", "passed": False, "size": 0}
    assert f"--keep-fp32 {','.join(keep)}" in proc.stdout  # what `cpdebug bisect --keep-fp32` takes
    # the whole command, runnable as printed (issue 117: it said `cpdebug bisect ... --keep-fp32 …`)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("cpdebug bisect"))
    assert "..." not in line and f"--onnx {files / 'model.onnx'} --inputs {files / 'inputs.npz'}" in line
    assert "--backends ort,ort-cpu-fp16 --keep-fp32" in line
    assert "keep-FP32 search on ort-cpu-fp16" in proc.stdout and "minimize" in proc.stdout
    assert "float16 storage emulated" in proc.stdout  # what ORT CPU really ran is reported, not hidden
    assert "✓ ort-cpu-fp16: run 1" in proc.stderr  # progress, on stderr


def test_bisect_s_pair_form_with_the_search_s_own_reference_is_taken(files, tmp_path):
    """`--backends ort-cpu,ort-cpu-fp16` (bisect's REF,CAND form, REF the search's own reference) is the candidate
    alone, as fix of --onnx takes it: the same set as `--backends ort-cpu-fp16`."""
    sets = []
    for backends in ("ort-cpu-fp16", "ort-cpu,ort-cpu-fp16"):
        js = tmp_path / f"{backends.replace(',', '_')}.json"
        proc = cpdebug("--onnx", files / "model.onnx", "--inputs", files / "inputs.npz", "--backends", backends,
                       "--json", js, "--quiet")
        assert proc.returncode == 0, proc.stderr[-2000:]
        sets.append(json.loads(js.read_text())["keep"])
    assert sets[0] and sets[0] == sets[1]


def test_json_to_stdout_and_torch_loader(tmp_path):
    proc = cpdebug("--torch", CONCAT, "--exporter", "torchscript", "--json", "-")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)  # stdout holds the JSON only
    assert data["status"] == "found" and data["backend"] == "ort-cpu-fp16"
    assert "✓" not in proc.stderr  # no progress with --json -
    # bisect's default pair, as fix's help gives it (issue 85): for a --torch model, the torch reference is taken
    # (the search's judge stays the exported FP32 graph) and the set is the same
    proc = cpdebug("--torch", CONCAT, "--exporter", "torchscript", "--backends", "torch,ort-cpu-fp16", "--json", "-")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["keep"] == data["keep"]


def test_exit_1_when_even_every_candidate_in_fp32_fails(files):
    proc = cpdebug("--onnx", files / "model.onnx", "--inputs", files / "inputs.npz", "--search-nodes", "/head/Conv",
                   "--quiet")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Even with all 1 candidates in FP32 the outputs fail" in proc.stdout


@pytest.mark.parametrize("case", ["missing_file", "two_models", "no_model", "unknown_node", "int8_backend",
                                  "wrong_inputs", "unwritable_json", "bisect_pair"])
def test_bad_input_is_one_line_and_exit_2(files, tmp_path, case):
    model, inputs = files / "model.onnx", files / "inputs.npz"
    args = {
        "missing_file": ["--onnx", tmp_path / "nope.onnx"],
        "two_models": ["--onnx", model, "--torch", CONCAT],
        "no_model": [],
        "unknown_node": ["--onnx", model, "--inputs", inputs, "--search-nodes", "/no/such,/head/Conv"],
        "int8_backend": ["--onnx", model, "--backends", "ort-cpu-int8"],
        "wrong_inputs": ["--onnx", model, "--inputs", tmp_path / "bad.npz"],
        "unwritable_json": ["--onnx", model, "--json", tmp_path / "no_dir" / "k.json"],
        "bisect_pair": ["--onnx", model, "--backends", "torch,ort-cpu-fp16"],  # bisect's REF,CAND form
    }[case]
    if case == "wrong_inputs":
        np.savez(tmp_path / "bad.npz", image=np.zeros((1, 8, 16, 16), np.float32))
    proc = cpdebug(*args, "--quiet")
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    one_error_line(proc)
    assert not (tmp_path / "no_dir").exists()
    if case == "bisect_pair":
        assert "give --backends ort-cpu-fp16" in proc.stderr


def test_trt_fp16_unavailable_here_is_exit_3(files):
    try:
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001
        pass
    else:
        pytest.skip("TensorRT is installed here")
    proc = cpdebug("--onnx", files / "model.onnx", "--backends", "trt-fp16", "--quiet")
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "TensorRT" in one_error_line(proc)


def test_inputs_given_a_folder_says_it_is_one_and_where_folders_go(tmp_path):
    """`keep-fp32 --inputs FOLDER` said "file not found" for a folder that exists (issue 85): one line that says
    what it is and which command takes a folder of samples, exit 2."""
    import numpy as np

    from tests.bisect import fp8_models as fm

    model = fm.export(fm.cnn(None), fm.cnn_example(), tmp_path / "cnn.onnx")
    (tmp_path / "samples").mkdir()
    np.savez(tmp_path / "samples" / "a.npz", x=fm.cnn_input())
    proc = cpdebug("--onnx", model, "-b", "ort-cpu-fp16", "--inputs", tmp_path / "samples")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert "samples is a folder: this command takes one .npz" in line and "cpdebug fix --inputs DIR" in line, line
