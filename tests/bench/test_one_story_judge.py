"""The trained corpus's one-story judge (benchmarks/trained_corpus.same_story; issue 115, item 5): the built-in INT8
and the same quantization as a user's file tell one story where they name one probe — or, neither confirmed, where
the graph's halves place the error alike. basic-pitch's INT8 under the rule reverted at 064d4f44: both roots
unconfirmed, the built-in's halves ending at a 44-node block (it quantizes the Pads and MirrorPads the file leaves
float, so its halves cut elsewhere), the file's at 23 nodes within it — one place, two names proposed: the judge said
DIFFERENT. Two confirmed roots that differ, or blocks with no node in common, stay two stories. The root entries as
`bisect --json` writes them (`root_cause[label]`: probe, confirmed, intervention.spread)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "benchmarks" / "trained_corpus.py"


def _judge():
    spec = importlib.util.spec_from_file_location("trained_corpus", CORPUS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.same_story


def _root(probe, within=(), confirmed=False, accumulates=False) -> dict:
    return {"probe": probe, "confirmed": confirmed,
            "intervention": {"spread": {"accumulates": accumulates, "within": list(within)}}}


FRONT = [f"cq_t2010v2_1/conv1d_{k}" for k in range(1, 18)]  # the CQT front end's convs, both blocks'


def test_two_unconfirmed_roots_whose_blocks_share_nodes_are_one_story():
    same = _judge()
    built = _root("cq_t2010v2_1/Neg_6", ["cq_t2010v2_1/reflection_pad1d/MirrorPad", *FRONT, "cq_t2010v2_1/Neg_6"])
    file = _root("cq_t2010v2_1/Neg", FRONT)
    assert same(built, file) and same(file, built)
    assert same(_root("a", accumulates=True), _root("b", accumulates=True))  # no half back on either side


def test_confirmed_roots_that_differ_or_blocks_apart_are_two_stories():
    same = _judge()
    assert not same(_root("a", FRONT, confirmed=True), _root("b", FRONT))
    assert not same(_root("a", FRONT[:8]), _root("b", FRONT[8:]))
    assert not same(_root("a", accumulates=True), _root("b", FRONT))  # spread on one side, a block on the other
    assert not same({"probe": "a", "confirmed": False, "intervention": {}}, _root("b", FRONT))  # no halves run
    assert not same({}, {})  # neither named: no story (a refusal's exit is judged beside)
    assert same(_root("a", confirmed=True), _root("a", confirmed=True))
