"""`--backends` has one parser (`parse_backends`) and a rule per command: how many specs, which may come twice."""

from __future__ import annotations

import pytest

from cp_debug.backends.spec import (NOISE_CHECK, REF_CAND, REF_CANDIDATES, SPECS, BackendSpec, BackendsRule,
                                    parse_backends)
from cp_debug.errors import BadInputError


@pytest.mark.parametrize("rule,text,labels", [
    (REF_CANDIDATES, " torch , ort-cpu-fp16,ort ", ["torch", "ort-cpu-fp16", "ort"]),
    (NOISE_CHECK, "ort,ort", ["ort", "ort"]),  # the reference against itself: a noise check
    (NOISE_CHECK, "torch,torch,ort", ["torch", "torch", "ort"]),
    (REF_CAND, "torch,ort-cpu-int8", ["torch", "ort-cpu-int8"]),
    (SPECS, "ort", ["ort"]),
])
def test_each_rule_takes_its_lists(rule, text, labels):
    pairs = parse_backends(text, rule=rule)
    assert [label for label, _ in pairs] == labels
    assert [spec for _, spec in pairs] == [BackendSpec.parse(label) for label in labels]


@pytest.mark.parametrize("rule,text,message", [
    (REF_CANDIDATES, " , ", "--backends is empty: give REF,CAND[,CAND…], e.g. torch,ort"),
    (REF_CANDIDATES, "torch", "--backends takes REF,CAND[,CAND…], e.g. torch,ort (got 'torch')"),
    (REF_CANDIDATES, "ort,ort", "--backends lists a backend twice: 'ort,ort'"),
    (REF_CANDIDATES, "torch,ort,torch", "--backends lists a backend twice: 'torch,ort,torch'"),
    (NOISE_CHECK, "torch,ort,ort", "--backends lists the same candidate twice: 'torch,ort,ort'"),
    (REF_CAND, "torch", "--backends takes REF,CAND, e.g. torch,ort-cpu-fp16 (got 'torch')"),
    (REF_CAND, "torch,ort,ort-cpu-fp16", "--backends takes REF,CAND, e.g. torch,ort-cpu-fp16 (got "
                                         "'torch,ort,ort-cpu-fp16')"),
    (SPECS, "torch,torch", "--backends lists a backend twice: 'torch,torch'"),
    (BackendsRule(hint=" or REF with a --detections file"), "torch",
     "--backends takes REF,CAND[,CAND…] or REF with a --detections file, e.g. torch,ort (got 'torch')"),
])
def test_a_broken_rule_is_one_line(rule, text, message):
    with pytest.raises(BadInputError) as err:
        parse_backends(text, rule=rule)
    assert str(err.value) == message


def test_the_rule_is_checked_before_any_spec_is_parsed():
    with pytest.raises(BadInputError, match="twice"):
        parse_backends("nonsense,nonsense")
    with pytest.raises(BadInputError, match="unknown backend spec 'nonsense'"):
        parse_backends("torch,nonsense")
