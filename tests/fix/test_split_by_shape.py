"""A generic fix's samples of several input shapes (a model with dynamic axes) are split shape by shape — the search
and the verification each see every shape — and one shape is split as before (`fix/samples.split_samples`)."""

from __future__ import annotations

import numpy as np
import pytest

from cp_debug.errors import BadInputError
from cp_debug.fix.samples import split_samples
from cp_debug.samples.sets import Sample


def _samples(*lengths: int) -> list[Sample]:
    return [Sample(f"s{k}_{n}", {"x": np.zeros((1, n, 4), np.float32)}) for k, n in enumerate(lengths)]


def _names(part) -> list[str]:
    return [s.name for s in part]


def test_one_shape_is_split_as_before():
    split = split_samples(_samples(8, 8, 8, 8, 8), None, "here")
    assert (_names(split.search), _names(split.verify)) == (["s0_8", "s1_8", "s2_8"], ["s3_8", "s4_8"])
    assert split.by_shape() == {} and "shapes" not in split.to_json()
    with pytest.raises(BadInputError, match="at least one must be left to the search"):
        split_samples(_samples(8, 8), 2, "here")


def test_several_shapes_are_split_shape_by_shape():
    split = split_samples(_samples(64, 4096, 64, 4096, 512), None, "here")
    assert _names(split.search) == ["s0_64", "s1_4096", "s4_512"]
    assert _names(split.verify) == ["s2_64", "s3_4096", "s4_512"]  # a shape of one sample: verified on it
    assert not split.held_out
    shapes = {s["shape"]: (s["search"], s["verify"], s["held_out"]) for s in split.to_json()["shapes"]}
    assert shapes == {"x[1,64,4]": (["s0_64"], ["s2_64"], True), "x[1,4096,4]": (["s1_4096"], ["s3_4096"], True),
                      "x[1,512,4]": (["s4_512"], ["s4_512"], False)}
    again = split_samples(_samples(64, 64, 64, 4096, 4096, 4096), 1, "here")  # --verify-n: each shape's
    assert _names(again.verify) == ["s2_64", "s5_4096"] and again.held_out
