"""Input as users give it (issue 69, "User input"): token ids beyond the vocabulary are the user's error (exit 2, the
module named), never "a bug of cp_debug"; a model left in train mode is switched to eval with a line saying so; a
module shared by many blocks is one probe per call, named by the block it was called from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from cp_debug.errors import UserCodeError, plain
from cp_debug.probes.torch_trace import trace_module
from tests.cli_run import cpdebug
from tests.zoo import user_input_models as models

ZOO = Path(models.__file__)


def test_token_ids_beyond_the_vocabulary_are_the_users_error_naming_the_embedding(tmp_path):
    ids = tmp_path / "ids.npz"
    np.savez(ids, input_ids=np.full((1, models.SEQ), 150, dtype=np.int64))
    for args in (("--torch", f"{ZOO}:build_bert_ids", "--inputs", ids), ("--torch", f"{ZOO}:build_bert_bad_ids")):
        proc = cpdebug("bisect", *args, "--backends", "torch,torch-cpu-fp16")
        assert proc.returncode == 2, proc.stderr[-2000:]
        line = proc.stderr.strip().splitlines()[-1]
        assert "embeddings.word_embeddings (Embedding)" in line and "IndexError" in line, line
        assert "bug of cp_debug" not in proc.stderr


class _CallsCpDebug(torch.nn.Module):
    def forward(self, x):
        return plain(None) if x.sum() > 0 else torch.nn.functional.embedding(x.long() + 99, torch.zeros(3, 2))


def test_an_error_raised_inside_cp_debugs_own_code_stays_its_bug():
    model = _CallsCpDebug()
    names = {id(m): n for n, m in model.named_modules()}
    errors = []
    for x in (torch.ones(2), torch.zeros(2)):
        try:
            model(x)
        except Exception as err:  # noqa: BLE001 - the classification is what is tested
            errors.append(UserCodeError.in_model(err, names, "on the example inputs"))
    ours, theirs = errors
    assert ours is None  # TypeError from cp_debug.errors.plain: exit 70 with its traceback
    assert theirs is not None and "the model (_CallsCpDebug) raised on the example inputs: IndexError" in str(theirs)


def test_a_model_left_in_train_mode_is_switched_to_eval_and_says_so(tmp_path):
    out = tmp_path / "r.json"
    proc = cpdebug("bisect", "--torch", f"{ZOO}:build_train_mode", "--json", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    said = [w for w in json.loads(out.read_text())["warnings"] if "train mode" in w]
    assert len(said) == 1 and "switched to eval mode" in said[0] and "(6 of its modules)" in said[0]
    assert "! the model was in train mode" in proc.stderr


def test_a_module_shared_by_five_blocks_is_one_probe_per_call_named_by_its_block(tmp_path):
    trace = trace_module(*models.build_shared_act())
    acts = [p for p in trace.order if trace.types[p] == "SiLU"]
    assert acts == [f"blocks.{i}.act" for i in range(5)]
    assert {trace.site(p).module for p in acts} == {"blocks.0.act"} and trace.site("blocks.3.act").call == 4
    out = tmp_path / "r.json"
    proc = cpdebug("bisect", "--torch", f"{ZOO}:build_shared_act", "--level", "all", "--exporter", "torchscript",
                   "--json", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    (cand,) = report["candidates"]
    rows = {r["probe"]: r["status"] for r in report["results"][cand]}
    assert [rows[p] for p in acts] == ["ok"] * 5
    assert not [p for p, s in rows.items() if s == "missing" and "act" in p]


def test_keyword_example_inputs_are_onnx_inputs_by_their_names_and_the_inputs_files_keys(tmp_path):
    from cp_debug.bisect.subjects.loaders import torch_subject

    for build, names in (("build_bert_keywords", ["input_ids", "attention_mask"]),
                         ("build_bert_args_and_keywords", ["input_ids", "token_type_ids"])):
        subject = torch_subject(f"{ZOO}:{build}", exporter="torchscript")
        (stage,) = subject.stages
        assert list(stage.input_names) == names == list(subject.inputs)
        assert [i.name for i in stage.onnx().graph.input] == names
        copy = __import__("copy").deepcopy(stage.module)  # each torch runner's copy calls its own forward
        assert copy.forward.__self__ is copy
    given = tmp_path / "kw.npz"
    np.savez(given, input_ids=np.arange(models.SEQ)[None], attention_mask=np.ones((1, models.SEQ), np.int64))
    out = tmp_path / "r.json"
    proc = cpdebug("bisect", "--torch", f"{ZOO}:build_bert_keywords", "--inputs", given, "--exporter", "dynamo",
                   "--json", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(out.read_text())["outcome"] == "within_precision"


def test_calls_no_exporter_scope_tells_apart_share_one_note():
    proc = cpdebug("bisect", "--torch", f"{ZOO}:build_thrice", "--level", "all", "--exporter", "dynamo")
    assert proc.returncode == 0, proc.stderr[-2000:]
    notes = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("note act")]
    assert notes == ["  note act#1 … act#3 (3 probes): called 3 times, but its ONNX nodes form 2 group(s): no call is "
                     "paired with another call's tensor, so none is compared"], notes
