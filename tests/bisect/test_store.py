"""TensorStore: spilled arrays never overwrite each other; budget 0 spills everything; files go on close."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cp_debug.bisect.store import TensorStore


def test_putting_a_name_again_never_overwrites_another_name():
    s = TensorStore(0)
    zeros, ones, sevens = np.zeros(4, np.float32), np.ones(4, np.float32), np.full(4, 7, np.float32)
    s.put("a", zeros)
    s.put("b", ones)
    s.put("a", sevens)  # the defect: this used to land in b's file
    s.put("c", zeros)
    np.testing.assert_array_equal(s.get("b"), ones)
    np.testing.assert_array_equal(s.get("a"), sevens)
    np.testing.assert_array_equal(s.get("c"), zeros)
    assert len(s) == 3 and len(os.listdir(s.spill_dir)) == 3
    s.close()


def test_many_re_puts_keep_every_name_its_own_value():
    rng = np.random.default_rng(0)
    s = TensorStore(64)  # a few small arrays in memory, the rest on disk
    truth = {}
    for _ in range(200):
        name = f"t{rng.integers(0, 12)}"
        arr = rng.standard_normal(int(rng.integers(1, 40))).astype(np.float32)
        s.put(name, arr)
        truth[name] = arr
    for name, arr in truth.items():
        np.testing.assert_array_equal(s.get(name), arr)
    assert s.in_memory <= 64
    s.close()


def test_budget_zero_puts_everything_on_disk_and_close_removes_it():
    s = TensorStore(0)
    s.put("x", np.arange(10, dtype=np.float32))
    assert s.in_memory == 0 and s.spilled == 40
    d = s.spill_dir
    assert d and os.path.isdir(d)
    s.close()
    assert not os.path.exists(d)
    s.close()  # twice is fine


def test_negative_budget_is_refused():
    with pytest.raises(ValueError):
        TensorStore(-1)


def test_spill_folder_is_removed_when_the_process_dies_of_an_error(tmp_path):
    script = textwrap.dedent(f"""
        import numpy as np
        from cp_debug.bisect.store import TensorStore
        s = TensorStore(0)
        s.put("x", np.ones(3))
        open({str(tmp_path / 'dir.txt')!r}, "w").write(s.spill_dir)
        raise KeyboardInterrupt
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    spill = (tmp_path / "dir.txt").read_text()
    assert spill and not os.path.exists(spill)


def test_a_borrowed_array_is_copied_when_kept_in_memory_and_written_as_it_was_past_the_budget():
    lent = np.arange(6, dtype=np.float32)  # a runner's reused buffer: its contents change after the call
    s = TensorStore(lent.nbytes)
    s.put("in_memory", lent, borrowed=True)
    s.put("on_disk", lent * 2, borrowed=True)
    lent[:] = -1
    np.testing.assert_array_equal(s.get("in_memory"), np.arange(6, dtype=np.float32))
    np.testing.assert_array_equal(s.get("on_disk"), np.arange(6, dtype=np.float32) * 2)
    s.close()


def test_default_budget_is_a_share_of_the_memory_available_now():
    """No fixed 2 GiB: a quarter of what /proc/meminfo (within a cgroup's limit) says is available, read now."""
    from cp_debug.bisect.store import AUTO_SHARE, available_memory, default_budget

    avail = available_memory()
    if avail is None:
        pytest.skip("this machine says nothing of its available memory")
    with open("/proc/meminfo") as f:
        total = int(next(line for line in f if line.startswith("MemTotal:")).split()[1]) * 1024
    assert 0 < avail <= total
    assert abs(default_budget() - max(AUTO_SHARE * avail, 256 << 20)) < 0.05 * total  # memory moves meanwhile
