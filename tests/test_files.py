"""cp_debug.files: atomic writes replace whole or leave nothing, and their failures are one line."""

from __future__ import annotations

import os

import pytest

from cp_debug.errors import BadInputError
from cp_debug.files import write_bytes_atomic, write_text_atomic


def _one_line(err: BadInputError) -> str:
    msg = str(err)
    assert "\n" not in msg and msg
    return msg


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "out.txt"
    p.write_text("old")
    write_text_atomic(p, "new")
    assert p.read_text() == "new"
    assert os.listdir(tmp_path) == ["out.txt"]
    assert (p.stat().st_mode & 0o777) & 0o044  # readable by others, not mkstemp's 0600


@pytest.mark.parametrize("where", ["parent_is_file", "missing_dir", "proc", "target_is_dir"])
def test_atomic_write_failures_are_one_line(tmp_path, where):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    target = {"parent_is_file": blocker / "out.json", "missing_dir": tmp_path / "nope" / "out.json",
              "proc": "/proc/cp_debug_test/out.json", "target_is_dir": tmp_path}[where]
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(BadInputError) as e:
        write_bytes_atomic(target, b"data")
    msg = _one_line(e.value)
    assert msg.startswith(f"cannot write {target}:")
    assert sorted(os.listdir(tmp_path)) == before


def test_atomic_write_disk_full_leaves_nothing(tmp_path, monkeypatch):
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, data):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    with pytest.raises(BadInputError, match="no space left on device"):
        write_text_atomic(tmp_path / "r.json", "x")
    assert os.listdir(tmp_path) == []


def test_tree_stamp_names_every_file_and_changes_when_one_is_written_again(tmp_path):
    from cp_debug.files import tree_stamp

    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.json").write_text("{}")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    first = tree_stamp(tmp_path)
    assert [path for path, _, _ in first] == ["a.py", os.path.join("sub", "b.json")]
    assert [path for path, _, _ in tree_stamp(tmp_path, ".py")] == ["a.py"]
    assert tree_stamp(tmp_path) == first
    st = (tmp_path / "a.py").stat()
    (tmp_path / "a.py").write_text("x = 2\n")  # same size: the time tells
    os.utime(tmp_path / "a.py", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert tree_stamp(tmp_path) != first
    assert tree_stamp(tmp_path / "missing") == ()
