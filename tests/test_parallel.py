"""cp_debug.parallel: a range split on block boundaries."""

from __future__ import annotations

from cp_debug.parallel import split


def test_split_covers_the_range_on_block_boundaries():
    assert split(10, 3) == [(0, 4), (4, 8), (8, 10)]
    parts = split(1_000_003, 4, align=1 << 16)
    assert parts[0][0] == 0 and parts[-1][1] == 1_000_003
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    assert all(lo % (1 << 16) == 0 for lo, _ in parts)
