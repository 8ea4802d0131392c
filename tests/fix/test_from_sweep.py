"""`cpdebug fix --from-sweep DIR`: a real sweep of a planted FP16 overflow (tiny preset, 3 held-out frames) hands
the fix its model, candidate, frames in rank order and blamed layer; sweeps it cannot start from are one line and
exit 2. (The search and the written pair: test_fix_fp16.py, test_from_bisect.py.)"""

from __future__ import annotations

import json

import pytest

from cp_debug.recipes import catalog
from tests.fix.cli import cpdebug
from tests.fix.planted import local_overflow_checkpoint

CP = catalog.recipe()  # the default recipe, CenterPoint (the command line resolves it)

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    from cp_debug.lidar.record import ModelRecord
    from cp_debug.sweep.records import SweepSettings
    from cp_debug.sweep.report import write_all
    from cp_debug.sweep.session import SweepOptions, run_sweep

    tmp = tmp_path_factory.mktemp("fix_sweep")
    ckpt = str(local_overflow_checkpoint(tmp / "planted.pth"))
    # one intra-op thread, as conftest gives each xdist worker: the sweep's default is every core, whose torch and
    # ONNX Runtime threads spin against the other worker's (this sweep: 42 -> 25 CPU s). Thread counts only.
    settings = SweepSettings(("torch", "ort-cpu-fp16"), preset="tiny", checkpoint=ckpt, threads=1, recipe=CP)
    opts = SweepOptions(settings, tmp / "sweep", n=3, shard_size=3, bisect_top=1, bootstrap=0,
                        model_record=ModelRecord.of("tiny", checkpoint=ckpt))
    doc = write_all(run_sweep(opts), opts, html_report=False)
    return tmp, doc


def test_the_request_carries_the_sweeps_model_frames_order_and_blame(swept):
    from cp_debug.fix.run import request_from_sweep
    from cp_debug.lidar.record import ModelRecord
    from cp_debug.fix.targets import FixTarget

    tmp, doc = swept
    req = request_from_sweep(tmp / "sweep", recipe=CP, target=FixTarget(tol=0.05))
    assert req.candidate == "ort-cpu-fp16" and req.reference == "torch" and req.model.preset == "tiny"
    assert req.model.checkpoint == str(tmp / "planted.pth") and (req.first_scene, req.scenes) == (0, 3)
    assert req.model == ModelRecord.of("tiny", checkpoint=str(tmp / "planted.pth"))  # the sweep's record, whole
    ranked = [int(f["token"].split("_")[1]) - 1_000_000 for f in doc["frames"]]
    assert req.frame_order == tuple(ranked) and sorted(ranked) == [0, 1, 2]
    counts = doc["root_cause_counts"]["counts"]
    assert counts and req.first_modules[0] == max(counts, key=counts.get)  # the sweep's blamed layer ranks first
    again = request_from_sweep(tmp / "sweep", recipe=CP, target=FixTarget(tol=0.05), scenes=2)
    assert again.scenes == 2  # the user's word


def test_the_sweeps_order_reaches_the_search_cut_to_the_frames_judged():
    """run_fix hands the search the sweep's order (worst first) over the frames it judges: every frame once (the
    search itself, its cheap rejection on the worst frames included, is tested in test_search.py / test_fix_fp16)."""
    from cp_debug.recipes.centerpoint.fix import frame_order as _frame_order

    assert _frame_order((2, 0, 1), 3) == (2, 0, 1)
    assert _frame_order((2, 0, 1), 2) == (0, 1)  # --scenes 2: frame 2 is not judged
    assert _frame_order((1,), 3) == (1, 0, 2)
    assert _frame_order(None, 3) is None


def test_sweeps_it_cannot_start_from_are_one_line(swept, tmp_path):
    tmp, doc = swept
    other = json.loads((tmp / "sweep" / "sweep.json").read_text())
    for f in other["frames"]:
        f["token"] = "t4_sample_" + f["token"]  # frames of a dataset, not held-out synthetic scenes
    (tmp_path / "t4").mkdir()
    (tmp_path / "t4" / "sweep.json").write_text(json.dumps(other))
    fp32 = {**other, "candidates": ["ort"]}
    (tmp_path / "fp32").mkdir()
    (tmp_path / "fp32" / "sweep.json").write_text(json.dumps(fp32))
    cases = [(tmp_path / "t4", "held-out synthetic frames"), (tmp_path / "fp32", "no ONNX Runtime FP16/INT8"),
             (tmp_path / "nothing", "cannot read the sweep")]
    for path, match in cases:
        proc = cpdebug("--from-sweep", path, "--max-rel-rmse", "0.05", "--out", tmp_path / "x")
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("cpdebug: error:")]
        assert proc.returncode == 2 and len(lines) == 1 and match in lines[0], (path, proc.stderr)


def test_a_sweep_of_any_model_starts_a_fix_of_that_model(tmp_path):
    """`fix --from-sweep` of a `sweep --onnx M --inputs DIR` sweep (issue 85, item 2: it said "ran on other frames;
    fix judges on held-out synthetic frames", CenterPoint's words): the sweep's model, samples and first candidate
    become `fix --onnx M --inputs DIR -b REF,CAND`, run from another folder too (the CNN whose first conv's bias is
    1e6: beyond FP16)."""
    import json

    import numpy as np

    from tests.bisect import fp8_models as fm
    from tests.cli_run import cpdebug as run

    work = tmp_path / "work"
    (work / "samples").mkdir(parents=True)
    fm.export(fm.cnn("activation"), fm.cnn_example(), work / "cnn.onnx")
    for k in range(4):
        np.savez(work / "samples" / f"s{k}.npz", x=fm.cnn_input(seed=k))
    proc = run("sweep", "--onnx", "cnn.onnx", "--inputs", "samples", "-b", "ort,ort-cpu-fp16", "--out", "sw",
               cwd=work)
    assert proc.returncode in (0, 1, 4), proc.stdout[-2000:] + proc.stderr[-2000:]
    proc = run("fix", "--from-sweep", work / "sw", "--out", tmp_path / "fix", "--json", tmp_path / "f.json",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    doc = json.loads((tmp_path / "f.json").read_text())
    assert doc["kind"] == "fp16" and doc["backends"]["candidate"] == "ort-cpu-fp16"
    assert doc["model"]["onnx"].endswith("cnn.onnx") and doc["set"]["keep_fp32"], doc["set"]  # the 1e6 bias's conv
