"""`cpdebug bisect --torch` is repeatable (issue 72): the README's `my_model.py` draws its weights and example input
at random without a seed of its own; cp_debug seeds Python's, numpy's and torch's generators from `--seed` before
the file runs, so two runs give the same numbers and the second finds the export in the cache."""

from __future__ import annotations

import json

from tests.cli_run import cpdebug

README_MODEL = '''
import random

import numpy as np
import torch


def build():  # the README's, its input shifted by Python's and numpy's generators too
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3)).eval()
    return net, (torch.randn(1, 3, 32, 32) + random.random() + float(np.random.rand()),)
'''


def _run(tmp_path, name: str, *extra) -> dict:
    out = tmp_path / f"{name}.json"
    proc = cpdebug("bisect", "--torch", f"{tmp_path / 'my_model.py'}:build", "--backends", "torch,ort-cpu-fp16",
                   "--json", out, "--quiet", *extra)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


def _probe0(doc: dict) -> tuple[float, float]:
    first = doc["results"]["ort-cpu-fp16"][0]
    return first["max_abs"], first["ref_absmax"]


def test_two_runs_of_a_random_build_agree_and_another_seed_differs(tmp_path):
    (tmp_path / "my_model.py").write_text(README_MODEL)
    a, b = _run(tmp_path, "a"), _run(tmp_path, "b")
    assert _probe0(a) == _probe0(b)
    assert b["settings"]["export_cache"] == {"my_model": "hit"}  # the same weights: the same graph, not re-exported
    c = _run(tmp_path, "c", "--seed", "1")
    assert _probe0(c) != _probe0(a)
    assert c["settings"]["determinism"]["seed"] == 1
