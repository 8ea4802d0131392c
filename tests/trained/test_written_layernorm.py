"""A LayerNorm written as ops in a user's Q/DQ file is matched to its module (issue 115, item 4): before, its
anchor missing, 7 of 12 probes of a small encoder (50 of 81 on a real one) were "not found in the deployed graph"."""

from __future__ import annotations

import json

import onnx

from tests.cli_run import cpdebug
from tests.trained.ln_models import user_file


def test_written_layernorm_read_as_one_op(tmp_path):
    from cp_debug.probes.written_forms import fuse_written_layernorms

    user_file(tmp_path)
    model = onnx.load(tmp_path / "deploy" / "model.onnx")
    view = fuse_written_layernorms(model)
    norms = [n for n in view.graph.node if n.op_type == "LayerNormalization"]
    assert len(norms) == 3 and not any(n.op_type in ("Pow", "Sqrt", "Div") for n in view.graph.node)
    made = {t for n in view.graph.node for t in n.output} | {i.name for i in view.graph.initializer}
    for n in norms:  # its input, weight and bias are tensors the view still holds (a weight behind its DQ)
        assert all(t in made or t == "x" for t in n.input), n.input
        assert n.output[0] in {t for m in model.graph.node for t in m.output}  # the file's own tensor
    assert fuse_written_layernorms(view) is view  # nothing written out left: the model itself

    res = cpdebug("bisect", "--torch", "tests/trained/ln_models.py:encoder", "--backends",
                  f"torch,ort@{tmp_path / 'deploy'}", "--exporter", "torchscript", "--level", "all", "--json",
                  tmp_path / "r.json", "--quiet")
    assert res.returncode == 0, res.stdout + res.stderr
    rows = next(iter(json.loads((tmp_path / "r.json").read_text())["results"].values()))
    missing = [r["probe"] for r in rows if r["status"] == "missing"]
    assert not missing and {"blocks.0.norm", "blocks.1.fc1", "norm", "head"} <= {r["probe"] for r in rows}, missing
