"""The pytest plugin as a user meets it: their own test file, run by a real pytest process with the plugin, passes on
a healthy model and fails on a planted one with the report's summary; its entry point names the plugin."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

USER_TESTS = '''
import sys
sys.path.insert(0, {folder!r})
import nets


def test_the_healthy_net_deploys_in_fp16(cpdebug):
    report = cpdebug.assert_within_precision(nets.net(), (nets.sample(),), "ort-cpu-fp16")
    assert report.exit_code == 0


def test_the_planted_net_deploys_in_fp16(cpdebug):
    cpdebug.assert_within_precision(nets.net(planted=True), (nets.sample(),), "ort-cpu-fp16")
'''


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow  # a fresh interpreter: torch, ONNX Runtime and two exports (about 15 s on an idle 2-core machine)
def test_a_users_pytest_file_passes_on_a_healthy_model_and_fails_with_the_summary_on_a_planted_one(tmp_path):
    (tmp_path / "test_numerics.py").write_text(USER_TESTS.format(folder=str(Path(__file__).parent)))
    # plain pytest, as the user runs it: the installed entry point (pytest11) loads the plugin; naming it again with
    # `-p cp_debug.pytest_plugin` is refused by pytest ("already registered under a different name")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CPDEBUG_SERVER": "off"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                           "test_numerics.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 1, out[-3000:] + proc.stderr[-2000:]
    assert "1 failed, 1 passed" in out, out[-3000:]
    failure = out[out.index("test_the_planted_net_deploys_in_fp16"):]
    assert "AssertionError: diverged (exit 1)" in failure
    assert "ort-cpu-fp16 vs torch: diverged: beyond fp16 from c1 (the root cause)" in failure
    assert "root cause: c1" in failure and "FP16 overflow at c1" in failure
    assert "cp_debug/api/" not in failure  # the user's line and the summary, not the library's frames


def test_the_entry_point_names_the_plugin_and_its_fixture():
    import cp_debug.pytest_plugin as plugin

    points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]
    assert points == {"cpdebug": "cp_debug.pytest_plugin"}
    assert callable(plugin.cpdebug) and hasattr(plugin.CpDebug, "assert_within_precision")
