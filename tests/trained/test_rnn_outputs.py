"""An LSTM's and a GRU's states mapped onto the deployed graph by computation (issue 115, item 4): torch returns
(output, (h_n, c_n)), whose h and c share one shape; each is the ONNX LSTM's Y_h / Y_c (carried through the
exporter's Concat of the layers' states), never left out as "which one holds this output is not known"."""

from __future__ import annotations

import json

import pytest

from tests.cli_run import cpdebug

MODELS = "tests/trained/rnn_models.py"


@pytest.mark.parametrize("cell,states,exporter", [("lstm", ["rnn[1][0]", "rnn[1][1]"], "torchscript"),
                                                  ("gru", ["rnn[1]"], "torchscript"),
                                                  pytest.param("lstm", ["rnn[1][0]", "rnn[1][1]"], "dynamo",
                                                               marks=pytest.mark.slow)])
def test_recurrent_states_are_probed(tmp_path, cell, states, exporter):
    res = cpdebug("bisect", "--torch", f"{MODELS}:{cell}", "--backends", "torch,ort-cpu", "--exporter", exporter,
                  "--json", tmp_path / "r.json", "--quiet")
    assert res.returncode == 0, res.stdout + res.stderr
    rows = {r["probe"]: r for r in next(iter(json.loads((tmp_path / "r.json").read_text())["results"].values()))}
    for name in ["rnn[0]", *states]:
        # h mapped onto c (or back) would differ by the states' own size, far beyond float32's rounding
        assert rows[name]["status"] == "ok", rows[name]
        assert rows[name]["max_abs"] < 1e-4, rows[name]
