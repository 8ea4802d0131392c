"""A sample sweep (no `--generate`) of a builder's decoder file (tests/data/llm): each sample gives its prompt's
input_ids, and the attention mask, positions and empty KV cache are made for it as bisect makes them (it was
refused: "lacks attention_mask, past_key_values…")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cp_debug.graph.model import load_onnx
from cp_debug.samples.sets import graph_inputs, sample_set
from tests.cli_run import cpdebug

LLM = Path(__file__).resolve().parents[1] / "data" / "llm"
FP32 = LLM / "qwen3_massive/fp32/model.onnx"


def _samples(folder: Path, **extra) -> Path:
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(3)
    for i in range(2):
        np.savez(folder / f"s{i}.npz", input_ids=rng.integers(0, 256, (1, 8 + i)), **extra)
    return folder


def test_a_decoder_files_samples_are_made_whole(tmp_path):
    """Each sample's input_ids completed as bisect's decoder_feed completes them: the mask all ones over the prompt,
    the cache empty [1, kv heads, 0, head size]; its ids as given. A sample without input_ids, or with an input the
    file does not take, is one line each, before anything runs."""
    from cp_debug.bisect.subjects.decoder_feed import DecoderInputs, decoder_feed

    model = load_onnx(FP32)
    graph = graph_inputs(model, "model.onnx", FP32)
    assert graph.decoder is not None and graph_inputs(model, "model.onnx").decoder is None
    given = sample_set(_samples(tmp_path / "ok"), None, graph)
    assert given.problems() == []
    first, second = given.read(0), given.read(1)
    ids = np.load(tmp_path / "ok/s1.npz")["input_ids"]
    assert np.array_equal(second.feed["input_ids"], ids) and second.feed["attention_mask"].shape == (1, 9)
    want = decoder_feed(DecoderInputs.of(model, FP32), {"input_ids": ids})
    assert set(second.feed) == set(want) == set(graph.names)
    assert all(np.array_equal(second.feed[k], v) and second.feed[k].dtype == v.dtype for k, v in want.items())
    assert first.feed["past_key_values.0.key"].shape == (1, 2, 0, 16)
    assert given.shapes()["s0"]["attention_mask"] == (1, 8)
    bad = tmp_path / "bad"
    bad.mkdir()
    np.savez(bad / "a.npz", tokens=np.zeros((1, 4), np.int64))
    np.savez(bad / "b.npz", input_ids=np.zeros((1, 4), np.int64), token_type_ids=np.zeros((1, 4), np.int64))
    problems = sample_set(bad, None, graph).problems()
    assert len(problems) == 2 and "lacks input_ids" in problems[0] and "'token_type_ids'" in problems[1]
    np.savez(bad / "a.npz", input0=ids)  # by position, as any file's samples may name their inputs
    np.savez(bad / "b.npz", input_ids=ids, input1=np.ones((1, 9), np.int64))
    assert sample_set(bad, None, graph).problems() == []
    assert np.array_equal(sample_set(bad, None, graph).read(0).feed["input_ids"], ids)


@pytest.mark.long
def test_a_sample_sweep_of_a_builder_file(tmp_path):
    """`sweep --onnx FP32 -b ort,ort@INT4DIR --inputs DIR` with token ids alone: every sample runs and is judged at
    the file's precision (int4w-a8), its worst bisected as bisect bisects that sample (the same root)."""
    out = tmp_path / "out"
    res = cpdebug("sweep", "--onnx", FP32, "-b", f"ort,ort@{LLM / 'qwen3_massive/int4'}", "--inputs",
                  _samples(tmp_path / "s"), "--out", out)
    said = " ".join((res.stdout + res.stderr).split())
    assert res.returncode in (0, 1, 4), said
    assert "lacks" not in said and "do not fit" not in said
    report = json.loads((out / "sweep.json").read_text())
    assert report["summary"]["frames"] == 2 and not report["summary"]["failed"], report["summary"]
    assert report["root_cause_counts"], report["root_cause_counts"]


def test_a_sliding_window_layers_cache_is_left_out_of_a_sample_run():
    """Gemma 2's layer 0 attends in a sliding window: its cache outputs hold the window's capacity, of which a prefill
    writes its own tokens only (the rest unwritten memory): the sample sweep's model leaves them out as bisect's
    does (`loaders.onnx_subject`, one home for the rule; before, only a bisect's seeded subject did)."""
    from cp_debug.recipes.module.model import load_module_model

    for feed in (False, True):  # a sweep's (its samples fed by it) and a bisect's
        model = load_module_model(None, LLM / "gemma2/fp32/model.onnx", need_feed=feed)
        assert "present.1.key" in model.output_names
        assert not {"present.0.key", "present.0.value"} & set(model.output_names)
        assert any("sliding-window layer" in w for w in model.subject.warnings)


@pytest.mark.long
def test_a_sample_sweep_of_a_gemma2_file_is_within_precision(tmp_path):
    """`sweep --onnx gemma2/fp32 -b ort,ort@int4 --inputs DIR`: the healthy INT4 file within precision on both
    samples (before: degraded, exit 4, its worst probe layer 0's sliding-window cache, `present.0.key`)."""
    out = tmp_path / "out"
    res = cpdebug("sweep", "--onnx", LLM / "gemma2/fp32/model.onnx", "-b", f"ort,ort@{LLM / 'gemma2/int4'}",
                  "--inputs", _samples(tmp_path / "s"), "--out", out)
    said = " ".join((res.stdout + res.stderr).split())
    assert res.returncode == 0, said
    report = json.loads((out / "sweep.json").read_text())
    assert report["summary"]["frames"] == 2 and report["summary"]["outcomes"]["within_precision"] == 2
    assert not any(str(f["worst_probe"]).startswith("present.0.") for f in report["frames"])
