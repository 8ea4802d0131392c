"""A user's Q/DQ file's range clips only what lies more than half a level beyond it (issue 115: "the tool names a conv
'clipping' by less than half a step"): PaddleOCR's recogniser in ORT's INT8, its range [-0.146, 6.07] against values
down to -0.149 — an eighth of a level beyond, rounded to the range's end as a value inside it is — was "clips the
reference's values … 10.82% of them lie beyond"."""

from __future__ import annotations

import numpy as np

from cp_debug.bisect.findings.qdq_file_why import _range


def test_values_within_half_a_level_past_the_range_are_no_clip():
    scale, zero = np.array(6.216 / 255), np.array(6.0)  # uint8 [-0.146, 6.07], as ORT's quantize_static wrote it
    lo = -zero * scale
    rng = np.random.default_rng(0)
    value = rng.uniform(0.0, 5.5, 10_000)
    value[:1000] = lo - 0.125 * scale  # 10 % an eighth of a level below: they quantize to the lowest level anyway
    said = _range(value, scale, zero, "uint8")
    assert said is None or "clips" not in said, said
    value[:1000] = lo - 2 * scale  # two levels below: clipped
    said = _range(value, scale, zero, "uint8")
    assert said is not None and said.startswith("clips the reference's values") and "10.00%" in said, said
