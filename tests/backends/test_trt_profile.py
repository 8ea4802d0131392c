"""Optimization profiles from frames' shapes (`backends/trt/trt_profile.py`): what the runner and the kit build with."""

import pytest

from cp_debug.backends.trt.trt_profile import ShapeRange, profile_from_shapes, trtexec_shape_flags
from cp_debug.errors import BadInputError


def test_profile_covers_every_frame_and_the_cap():
    shapes = [{"input_features": (5000, 32, 10)}, {"input_features": (12000, 32, 10)},
              {"input_features": (8000, 32, 10)}]
    prof = profile_from_shapes(shapes, caps={"input_features": {0: 40000}})
    assert prof["input_features"] == ShapeRange((5000, 32, 10), (12000, 32, 10), (40000, 32, 10))
    flags = trtexec_shape_flags(prof)
    assert flags == ["--minShapes=input_features:5000x32x10", "--optShapes=input_features:12000x32x10",
                     "--maxShapes=input_features:40000x32x10"]


def test_a_cap_never_lowers_a_frame_and_fixed_inputs_stay_fixed():
    prof = profile_from_shapes([{"a": (7, 3), "b": (1, 2)}], caps={"a": {0: 2}})
    assert prof["a"] == ShapeRange((7, 3), (7, 3), (7, 3))
    assert prof["b"].min == prof["b"].max == (1, 2)


@pytest.mark.parametrize("shapes,caps,words", [
    ([], None, "at least one frame"),
    ([{"a": (1, 2)}, {"b": (1, 2)}], None, "one profile cannot cover both"),
    ([{"a": (1, 2)}, {"a": (1, 2, 3)}], None, "changes rank"),
    ([{"a": (1, 2)}], {"a": {5: 9}}, "axis 5"),
])
def test_bad_shapes_are_one_line(shapes, caps, words):
    with pytest.raises(BadInputError, match=words):
        profile_from_shapes(shapes, caps)


def test_names_trtexec_cannot_carry_are_refused():
    with pytest.raises(BadInputError, match="cannot carry"):
        trtexec_shape_flags(profile_from_shapes([{"a:b": (1,)}]))
