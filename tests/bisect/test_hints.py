"""INT8 hints from the reference values against the calibrated range."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cp_debug.bisect.findings.hints import HintContext, Int8Range, hint_for, int8_range
from cp_debug.bisect.result import ProbeResult
from cp_debug.compare.diff import TensorDiff, default_tolerance


def test_saturation_and_lost_resolution_are_named_with_the_range():
    x = np.concatenate([np.full(990, 1e-4), np.full(10, 50.0)]).astype(np.float32)
    r = int8_range(x, amax=10.0)
    assert r == Int8Range(10.0, 0.01, 0.99)
    tol = default_tolerance("int8")
    d = TensorDiff.from_arrays("conv", x, x * 1.5, tol)
    hint = hint_for(ProbeResult("conv", d.status, d), HintContext("int8", int8_range=r))
    assert "INT8 saturation: 1.00%" in hint and "±10" in hint and "99% of the values round to zero" in hint
    assert int8_range(np.zeros(0, np.float32), 3.0) == Int8Range(3.0, 0.0, 0.0)


def test_the_reason_comes_before_the_precision_preamble():
    x = np.linspace(-1, 1, 1000).astype(np.float32)
    d = TensorDiff.from_arrays("conv", x, x * 1.3, default_tolerance("int8"))
    note = "ort-cpu-int8 did not run int8 throughout: mnet: ORT CPU ran 34 of 52 Conv nodes as int8 kernels"
    hint = hint_for(ProbeResult("conv", d.status, d, d),
                    HintContext("int8", precision_note=note, int8_range=int8_range(x, amax=1.0)))
    assert hint.startswith("INT8 quantisation error of this layer") and hint.endswith(note)
    assert hint.count("did not run int8 throughout") == 1


def test_a_users_file_is_advised_in_its_own_terms():
    """A user's Q/DQ file takes no --exclude-int8 (the built-in candidate's flag): its layer is left out of the file's
    quantization by the quantizer's `nodes_to_exclude`, or its Q/DQ pairs removed (issue 115)."""
    terms = "leave it out of the file's quantization (re-quantize with `nodes_to_exclude=['/c/Conv']`)"
    lost = np.concatenate([np.full(990, 1e-4), np.full(10, 50.0)]).astype(np.float32)
    for x, said in ((lost, "round to zero"), (np.linspace(-1, 1, 1000).astype(np.float32), "error of this layer")):
        d = TensorDiff.from_arrays("conv", x, x * 1.5, default_tolerance("int8"))
        r = int8_range(x, amax=float(np.abs(x).max()))
        built_in = hint_for(ProbeResult("conv", d.status, d), HintContext("int8", int8_range=r))
        theirs = hint_for(ProbeResult("conv", d.status, d), HintContext("int8", int8_range=r, file_exclude=terms))
        assert said in theirs and "--exclude-int8" in built_in, built_in
        assert "--exclude-int8" not in theirs and terms in theirs, theirs


def test_the_int8_advice_is_written_as_the_outputs_decided_it():
    """The probe's own INT8 advice is decided at the outputs before its words are made (`cures/advice.exclusion`): a
    typed `Exclusion` the hint renders — offered where verified, its run's figures where not the cure, "not offered"
    where not run there —; a story's cure ladder stands for the reading and its advice (`ladder`)."""
    from cp_debug.bisect.findings.hints import Exclusion, reads_lost

    x = np.concatenate([np.full(99, 1e-3), [100.0]]).astype(np.float32)  # 99 % round to zero at ±100
    d = TensorDiff.from_arrays("conv", x, x * 1.5, default_tolerance("int8"))
    r, ctx = ProbeResult("conv", d.status, d), HintContext("int8", int8_range=int8_range(x, amax=100.0))
    offered = "exclude this layer from INT8 (--exclude-int8) or clip the outliers"
    ran = Exclusion(False, ("conv",), "conv (1 node(s) left out of INT8)", "worst output 3× → 1.2× its budget", True)
    verified = Exclusion(True, ("conv",))
    said = {e: hint_for(r, replace(ctx, exclusion=e)) for e in (None, verified, ran, Exclusion(False))}
    assert offered in said[None] and said[None] == said[verified], said
    assert said[ran].endswith("; conv (1 node(s) left out of INT8) tried at the outputs: worst output 3× → 1.2× its "
                              "budget — nearer, not the cure") and offered not in said[ran], said[ran]
    assert said[Exclusion(False)].endswith("; not offered: its exclusion was not run at the outputs"), said
    assert reads_lost(ctx) and "INT8 resolution lost: 99%" in said[None]
    assert hint_for(r, replace(ctx, ladder=True)) is None  # the story's ladder says it
