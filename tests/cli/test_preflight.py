"""Commands check what they need before they spend time, and every report records its model (`ModelRecord`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cp_debug.cli.main import app
from cp_debug.lidar.record import ModelRecord


def load(record):
    """The record built by its recipe (CenterPoint's, the default)."""
    from cp_debug.recipes.catalog import recipe

    return recipe().load_model(record)


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _error_line(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.startswith("cpdebug: error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def _never(monkeypatch, module, name: str) -> None:
    """`module.name` (the step that loads the model or starts the work) fails the test if a command reaches it: what
    is checked must be refused before it."""
    def reached(*args, **kwargs):
        raise AssertionError(f"{module.__name__}.{name} was reached before the request was refused")

    monkeypatch.setattr(module, name, reached)


def test_eval_without_the_devkit_stops_before_any_inference(monkeypatch):
    from cp_debug.cli import eval_cmd

    _never(monkeypatch, eval_cmd, "_eval")  # not a minute of inference first
    monkeypatch.setitem(sys.modules, "nuscenes", None)  # `import nuscenes` raises ImportError
    result = _run("eval", "--n", "50", "--backends", "torch,ort", "--quiet")
    assert result.exit_code == 3, result.output
    assert "nuscenes-devkit is not installed" in _error_line(result)


# `python -c` entry: cpdebug in a fresh process where `import MODULE` fails (sys.modules[MODULE] = None), as on an
# install without that optional library
_WITHOUT = """
import sys
sys.modules[sys.argv[1]] = None
sys.argv = ["cpdebug", *sys.argv[2:]]
from cp_debug.cli.main import main
main()
"""


def _without(module: str, *args, cwd) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "COLUMNS": "200",
           "PYTHONPATH": os.pathsep.join(filter(None, (str(root), os.environ.get("PYTHONPATH"))))}
    env.pop("CPDEBUG_DEBUG", None)
    return subprocess.run([sys.executable, "-c", _WITHOUT, module, *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


@pytest.mark.parametrize("module, args, says", [
    ("pyarrow", ("sweep", "--preset", "tiny", "--backends", "torch,ort", "--n", "1", "--no-html", "-q", "--out", "s"),
     "cpdebug: error: cpdebug sweep writes frames.parquet, which needs pyarrow: pip install 'cp-debug[parquet]'"),
    ("nuscenes", ("eval", "--preset", "tiny", "--n", "1", "--backends", "torch,ort", "-q", "--json", "s/e.json"),
     "cpdebug: error: nuscenes-devkit is not installed: pip install -e '.[eval]' && "
     "pip install --no-deps nuscenes-devkit==1.2.0"),
    # fix verifies CenterPoint's pair by mAP: it searched 3 min 28 s before saying so
    ("nuscenes", ("fix", "--preset", "tiny", "--backends", "torch,ort-cpu-fp16", "--n", "2", "-q", "--out", "s"),
     "cpdebug: error: nuscenes-devkit is not installed: pip install -e '.[eval]' && "
     "pip install --no-deps nuscenes-devkit==1.2.0"),
])
def test_a_missing_library_is_one_line_before_the_work_and_nothing_is_written(tmp_path, module, args, says):
    """Issue 72: a sweep without pyarrow ran every frame, then exited 70 at frames.parquet and left a .lock; eval's
    line pointed at a README section that does not exist. Now: exit 3, the install line, no folder, no lock."""
    proc = _without(module, *args, cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [says], proc.stderr
    assert not (tmp_path / "s").exists()


def test_bisect_parquet_without_pyarrow_and_an_unwritable_json_stop_before_the_model_loads(monkeypatch, tmp_path):
    from cp_debug.api import bisect_run

    _never(monkeypatch, bisect_run, "load_subject")  # no model is built
    result = _run("bisect", "--json", tmp_path / "no" / "such" / "dir" / "run.json", "-q")
    assert result.exit_code == 2 and "no such file or directory" in _error_line(result)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    result = _run("bisect", "--parquet", tmp_path / "run.parquet", "-q")
    assert result.exit_code == 2 and "--parquet needs pyarrow" in _error_line(result)
    result = _run("bisect", "--points", tmp_path / "missing.bin", "-q")
    assert result.exit_code == 2 and "--points" in _error_line(result) and "does not exist" in result.output


def test_model_record_round_trips_through_json_and_loads():
    rec = ModelRecord.of("tiny", checkpoint=None, random_weights=True, seed=3)
    doc = json.loads(json.dumps(rec.to_json()))
    assert ModelRecord.from_json(doc) == rec
    from cp_debug.recipes.catalog import recipe

    assert recipe().weights_label(rec) == "random weights, seed 3"
    assert recipe().weights_label(ModelRecord.of("demo")).startswith("trained demo weights")
    assert recipe("transfusion").weights_label(ModelRecord.of("transfusion-demo")).startswith("trained transfusion")
    loaded = load(rec)
    assert loaded.cfg.name == "tiny" and loaded.weights == "random (seed 3)"


def test_model_record_of_a_config_file_loads_that_model_and_refuses_a_missing_one(tmp_path):
    from cp_debug.errors import BadInputError
    from cp_debug.models.centerpoint.presets import preset_config_path

    shipped = preset_config_path("tiny")  # an AWML-syntax file with a _base_ chain
    rec = ModelRecord.of("demo", config=shipped, random_weights=True, seed=1)
    assert rec.preset is None and rec.model_name == str(shipped)  # the config file is the model
    assert ModelRecord.from_json(json.loads(json.dumps(rec.to_json()))) == rec
    assert load(rec).cfg.grid_size == load(ModelRecord.of("tiny", random_weights=True, seed=1)).cfg.grid_size
    with pytest.raises(BadInputError, match="not found"):
        load(ModelRecord.of(None, config=tmp_path / "my_centerpoint.py"))
    with pytest.raises(BadInputError, match="not a model record"):
        ModelRecord.from_json({"preset": "demo", "weights": "random"})


def test_extract_rebuilds_the_model_from_the_model_record(tmp_path):
    """The record wins over the recipe's facts (whose weights text once decided random weights)."""
    from dataclasses import replace

    from cp_debug.bisect.subjects.model_facts import model_facts_from_json
    from cp_debug.bisect.result import BisectReport
    from cp_debug.cli.extract_cmd import _saved_subject

    # the facts of a report written before random_weights, the point cloud and the grid were recorded
    facts = model_facts_from_json({"kind": "recipe", "recipe": "centerpoint", "preset": "demo",
                                   "weights": "trained demo weights", "seed": 0})
    assert facts.random_weights is None and facts.points_file is None and facts.grid is None
    saved = BisectReport("torch", [], [], facts=facts, model=ModelRecord.of("tiny", random_weights=True, seed=5))
    again = BisectReport.from_json(json.loads(json.dumps(saved.to_json())))
    assert again.model == saved.model  # typed in the report, ModelRecord.to_json() in its JSON `model_record`
    assert again.facts == facts
    subject = _saved_subject(again, tmp_path / "run.json")
    assert subject.name == "centerpoint:tiny"
    assert (subject.facts.random_weights, subject.facts.seed) == (True, 5)
    old = BisectReport("torch", [], [], facts=replace(facts, preset="tiny"))  # a report from before the record
    assert _saved_subject(old, tmp_path / "old.json").facts.random_weights is False


def test_an_unknown_preset_and_a_zero_voxel_cap_are_refused_before_anything_loads(tmp_path, monkeypatch):
    """The one line of an unknown preset comes before the model loads (torch is not needed to say it); a replay's
    --max-voxels 0 (no pillar at all) before the bag is read."""
    from cp_debug.api import bisect_run

    _never(monkeypatch, bisect_run, "load_subject")
    result = _run("bisect", "--preset", "nope", "--json", tmp_path / "r.json")
    assert result.exit_code == 2, result.output
    assert "unknown CenterPoint preset 'nope'" in _error_line(result)
    assert not (tmp_path / "r.json").exists()
    result = _run("replay", tmp_path / "no-such-bag", "--preset", "tiny", "--max-voxels", "40000,0")
    assert result.exit_code == 2
    assert _error_line(result) == "cpdebug: error: --max-voxels '40000,0': a voxel cap is at least 1"
