"""The hidden corpus of s26 (`benchmarks/llm_hidden.py`, answers_hidden.json found without cp_debug): the massive
channel planted in a Llama (tests/data/llm/llama_massive: 3 layers, channel 5 at 250, ~512 at lm_head's input), built
by ONNX Runtime GenAI's builder at FP32 and INT4 (`-p int4 -e cpu`: MatMulNBits at accuracy_level 4). Its INT4 file
flips at greedy step 1 (230 → 55, the FP32 file's margin 0.39); `/lm_head/MatMul_Q4` alone flips it, its level 1
alone cures it, and the builder's `nodes_to_exclude=/lm_head/MatMul` file decodes the FP32 file's tokens.

Over the 6 prompts drawn with seed 5 (`sweep --n 6 --seed 5`), by hand (each node's level rewritten, ONNX Runtime's
greedy decode): 6 flip; lm_head at level 1 gives 4 back (0, 2, 3, 5), layer 2's down_proj at level 1 only prompt 0,
every node at level 1 the same 4 (prompts 1 and 4 flip by the weights)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cp_debug.bisect.subjects.greedy import LevelCure
from tests.cli_run import cpdebug

LLM = Path(__file__).resolve().parents[1] / "data" / "llm"
MASSIVE = LLM / "llama_massive"
ANSWERS = json.loads((LLM / "answers_hidden.json").read_text())
LM_HEAD = "/lm_head/MatMul_Q4"
DOWN = "/model/layers.2/mlp/down_proj/MatMul_Q4"


def test_the_llama_massive_flip_its_node_and_its_cure(tmp_path):
    """`bisect --onnx fp32 -b ort,ort@int4 --generate 16`: the step, the tokens, the node that alone flips it and
    its cure in the builder's terms, as answers_hidden.json has them; lm_head's logits a local fault (exit 1)."""
    answer = ANSWERS["models"]["llama_massive"]["files"]["int4"]
    assert answer["cured_by_level1_at"] == [LM_HEAD] == answer["flips_alone_at_level4"]
    prompt, report = tmp_path / "prompt.npz", tmp_path / "r.json"
    np.savez(prompt, input_ids=np.array([ANSWERS["prompt"]]))
    res = cpdebug("bisect", "--onnx", MASSIVE / "fp32/model.onnx", "-b", f"ort,ort@{MASSIVE / 'int4'}", "--inputs",
                  prompt, "--generate", ANSWERS["tokens"], "--json", report)
    said = " ".join((res.stdout + res.stderr).replace("│", " ").split())
    assert res.returncode == 1, said
    step = answer["first_flip"]
    fp32 = ANSWERS["models"]["llama_massive"]["files"]["fp32"]["tokens"]
    assert f"greedy step {step}: token {fp32[step]} → {answer['tokens'][step]}" in said
    assert (f"accuracy_level=1 on {LM_HEAD} alone gives the reference's tokens back (of 16 MatMulNBits at level 4); "
            "in the builder's terms --extra_options accuracy_level=1 or nodes_to_exclude=/lm_head/MatMul") in said
    assert "local fault at logits" in said and "40 of 40 probes mapped" in said


def test_the_sweep_keeps_the_cure_that_gives_the_most_prompts_back(tmp_path):
    """The first flipped prompt (0: the candidate's margin 6e-5, a near tie) is cured by layer 2's down_proj alone and
    by lm_head alone. Both were kept and said as "the first flipped prompt's cure", the builder's terms naming
    down_proj's exclusion (which gives 1 prompt of 6 back); now each is verified over the prompts and lm_head kept (4
    of 6, as every node at level 1: the other two flips are the weights')."""
    res = cpdebug("sweep", "--onnx", MASSIVE / "fp32/model.onnx", "-b", f"ort,ort@{MASSIVE / 'int4'}", "--n", "6",
                  "--seed", "5", "--generate", ANSWERS["tokens"], "--out", tmp_path / "s")
    doc = json.loads((tmp_path / "s" / "generate.json").read_text())
    assert res.returncode == 0, res.stdout + res.stderr  # 4 of 6: no setting cures every prompt
    assert doc["flipped"] == 6 and doc["cure"]["prompt"] == 0
    assert set(doc["cure"]["curing"]) == {DOWN, LM_HEAD}, doc["cure"]
    assert doc["cure"]["kept"] == [LM_HEAD] and doc["cure"]["verified"] == 4 == doc["cure"]["every_node"]
    assert (f"accuracy_level=1 on {LM_HEAD} (of the first flipped prompt's 2 cures, each alone, the one that gives "
            "the most prompts back) gives the reference's tokens back on 4 of 6 prompts; every MatMulNBits at level 1 "
            "gives 4 of 6 back") in res.stdout, res.stdout
    # the first flipped prompt's bisect says its setting: each node that alone cures that prompt, each exclusion
    assert (f"the setting: accuracy_level=1 on {DOWN} alone, or on {LM_HEAD} alone gives the reference's tokens back"
            in res.stdout) and "(or nodes_to_exclude=/lm_head/MatMul)" in doc["bisect"]["setting"], res.stdout


def test_several_nodes_each_curing_alone_are_said_each_with_its_exclusion():
    """A flip that each of two nodes' level 1 cures alone: both named, each one's exclusion an alternative (the
    builder's terms named the first node's alone before)."""
    line = LevelCure((DOWN, LM_HEAD, "/model/layers.0/attn/qkv_proj/MatMul_Q4"), (DOWN, LM_HEAD), True).line()
    assert line == (f"accuracy_level=1 on {DOWN} alone, or on {LM_HEAD} alone gives the reference's tokens back (of 3 "
                    "MatMulNBits at level 4); in the builder's terms --extra_options accuracy_level=1 or "
                    "nodes_to_exclude=/model/layers.2/mlp/down_proj/MatMul (or nodes_to_exclude=/lm_head/MatMul)")


def test_the_sweeps_cure_decodes_each_node_set_over_the_prompts_once():
    """`prompt_sweep._kept` asks for each node set's prompts given back once: the every-node count of a single level-4
    node (or of the curing set itself) is the one already decoded, not a second pass over the prompts."""
    from cp_debug.bisect.subjects.prompt_sweep import _kept

    asked: list[frozenset] = []
    back = {frozenset([LM_HEAD]): 4, frozenset([DOWN]): 1, frozenset([LM_HEAD, DOWN]): 4}

    def given_back(nodes) -> int:
        asked.append(frozenset(nodes))
        return back[frozenset(nodes)]

    assert _kept([LM_HEAD, DOWN], given_back, [DOWN, LM_HEAD]) == ((LM_HEAD,), 4, 4)
    assert sorted(map(sorted, asked)) == sorted(map(sorted, back))  # three sets, each once
    asked.clear()
    assert _kept([LM_HEAD], given_back, [LM_HEAD]) == ((LM_HEAD,), 4, 4) and asked == [frozenset([LM_HEAD])]
    assert _kept([], given_back, [LM_HEAD]) == ((), 0, 0)
