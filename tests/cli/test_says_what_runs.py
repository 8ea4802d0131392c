"""Say what runs (issue 85, item 3): a command given no model option runs the built-in demo and says so, first, on
stderr, even with --quiet, and in its JSON (`runs_on`); a model named says nothing, and a request refused before any
work stays the one line of its error."""

from __future__ import annotations

import json

import pytest
import typer

from cp_debug.cli.common.what_runs import FALLS_BACK, NAMING, SAYS_ITSELF
from tests.cli_run import cpdebug

DEMO_LINE = "cpdebug: no model given: {command} runs the built-in demo, CenterPoint preset demo"
# commands that refuse to run without a model (keep-fp32 runs TransFusion-L's demo with --recipe transfusion alone)
NEEDS_A_MODEL = {"lint": "nothing to check", "keep-fp32": "give one model"}


def test_every_command_with_model_options_falls_back_aloud_or_refuses():
    from cp_debug.cli.main import app

    group = typer.main.get_command(app)
    with_models = {name for name in group.list_commands(None)
                   if {o for p in group.commands[name].params for o in p.opts} & set(NAMING)}
    assert with_models - {"lint"} - SAYS_ITSELF == FALLS_BACK


@pytest.mark.parametrize("command", sorted(NEEDS_A_MODEL))
def test_a_command_that_needs_a_model_says_so_in_one_line(command):
    r = cpdebug(command)
    assert r.returncode == 2 and NEEDS_A_MODEL[command] in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_the_demo_is_named_first_even_quiet_and_recorded_in_the_json():
    r = cpdebug("bench", "--backends", "torch", "--repeat", "1", "--warmup", "0", "--json", "-", "--quiet")
    assert r.returncode == 0, r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith(DEMO_LINE.format(command="bench")), r.stderr
    assert "shipped trained weights" in first and "name yours with --config or --preset" in first
    runs_on = json.loads(r.stdout)["runs_on"]
    assert runs_on["given"] is False and runs_on["text"].startswith("the built-in demo, CenterPoint preset demo")


def test_a_model_named_is_recorded_and_says_nothing(tmp_path):
    r = cpdebug("bench", "--preset", "tiny", "--backends", "torch", "--repeat", "1", "--warmup", "0",
                "--json", str(tmp_path / "b.json"), "--quiet")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert json.loads((tmp_path / "b.json").read_text())["runs_on"] == {"given": True, "text": "--preset tiny"}


def test_a_refused_request_stays_one_line():
    """The case of the issue, refused before any work: the error alone (the demo is named once work starts)."""
    r = cpdebug("fix", "--backends", "torch,ort-cpu-fp16")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "give --out DIR" in r.stderr, r.stderr


def test_scenes_name_the_demo_they_are_made_for(tmp_path):
    r = cpdebug("scenes", "--n", "1", "--out", tmp_path / "s", "-q")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == ["cpdebug: no model given: scenes makes scenes for the built-in demo, CenterPoint "
                                     "preset demo (awml-base modules on a small 320x320 grid); name yours with "
                                     "--config or --preset"]


def test_weights_given_without_a_preset_still_name_the_demo():
    from cp_debug.cli.common.what_runs import demo_text

    assert demo_text([("--checkpoint", "ckpt.pth")]).endswith("with the weights of ckpt.pth")
    assert demo_text([("--random-weights", True)]).endswith("with seeded random weights")


def test_a_recipe_alone_names_its_demo():
    """--recipe transfusion names the family, not the model: its demo preset runs, and is said."""
    from cp_debug.cli.common.what_runs import what_runs
    from cp_debug.cli.main import app

    command = typer.main.get_command(app).commands["export"]
    for args, said in ((["--recipe", "transfusion"], "TransFusion-L preset transfusion-demo"),
                       (["--recipe", "centerpoint"], "CenterPoint preset demo")):
        record, line = what_runs(command.make_context("export", [*args, "--out", "x"]))
        assert record["given"] is False and said in record["text"] and said in line
    ctx = command.make_context("export", ["--recipe", "transfusion", "--preset", "transfusion-tiny", "--out", "x"])
    assert what_runs(ctx) == ({"given": True, "text": "--recipe transfusion --preset transfusion-tiny"}, None)
