"""The option groups of cli/common/options.py: the model options become one ModelRecord, checked in one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from cp_debug.cli.common.options import model_record
from cp_debug.errors import BadInputError
from cp_debug.lidar.record import ModelRecord


def test_model_options_become_one_record():
    record = model_record("tiny", None, Path("w.pth"), seed=3, int8=Path("ptq"))
    assert record == ModelRecord("tiny", None, "w.pth", False, 3, "ptq")
    assert record.model_name == "tiny"
    assert model_record("demo", None, random_weights=True) == ModelRecord("demo", random_weights=True)


def test_a_config_file_replaces_the_preset(tmp_path):
    config = tmp_path / "centerpoint.py"
    config.write_text("_base_ = []\n")
    record = model_record("demo", config)
    assert record.preset is None and record.config == str(config) and record.model_name == str(config)
    assert ModelRecord.from_json(record.to_json()) == record


@pytest.mark.parametrize("name,words", [("missing.py", "no such file"),
                                        ("config.txt", r"Python file \(.py, mmengine syntax\) or an autoware-ml YAML")])
def test_a_bad_config_file_is_one_line(tmp_path, name, words):
    path = tmp_path / name
    if name.endswith(".txt"):
        path.write_text("")
    with pytest.raises(BadInputError, match=words):
        model_record("demo", path)


@pytest.mark.parametrize("command,rule", [("bisect", "NOISE_CHECK"), ("eval", "REF_CANDIDATES"),
                                          ("sweep", "REF_CANDIDATES"), ("fix", "REF_CAND"), ("bench", "SPECS")])
def test_each_commands_backends_help_says_its_rule(command, rule):
    import typer

    from cp_debug.backends import spec
    from cp_debug.cli.main import app

    option = next(p for p in typer.main.get_command(app).commands[command].params if p.name == "backends")
    assert option.opts == ["--backends", "-b"]
    assert option.help.startswith(getattr(spec, rule).form + ":"), option.help
