"""A TopK's chosen indices compared as the members each row chooses (`compare.diff.same_members`): an MoE router's
two experts in the other order (near-tied scores) are the same choice, not an error of |i - j|; other experts, or a
float tensor in another order, are errors as before."""

from __future__ import annotations

import numpy as np

from cp_debug.compare.diff import TensorDiff, same_members


def test_the_same_experts_in_another_order_are_the_same_choice():
    ref = np.array([[1, 3], [0, 2], [5, 4]], np.int64)  # 3 tokens, 2 experts each (a router's TopK output 1)
    swapped = ref[:, ::-1].copy()
    d = TensorDiff.from_arrays("gate[2]", ref, swapped)
    assert same_members(ref, swapped)
    assert d.status == "ok" and d.max_abs == 0 and d.rel_rmse == 0 and d.ref_absmax == 5


def test_other_experts_or_floats_in_another_order_are_errors():
    ref = np.array([[1, 3], [0, 2]], np.int64)
    other = np.array([[1, 2], [0, 2]], np.int64)  # token 0 chose expert 2 where the reference chose 3
    assert not same_members(ref, other)
    assert TensorDiff.from_arrays("gate[2]", ref, other).max_abs == 1
    f = np.array([[0.25, 0.75]], np.float32)
    assert TensorDiff.from_arrays("w", f, f[:, ::-1].copy()).max_abs == 0.5  # float values keep their places
    assert not same_members(ref.reshape(-1)[:1].reshape(()), ref.reshape(-1)[:1].reshape(()))  # 0-d: nothing to order
