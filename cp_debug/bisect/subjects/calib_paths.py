"""The paths a user gives as `--calib` (bisect, fix, sweep, eval with --torch / --onnx): one reader, numpy-free, so a
command checks them in its first phase before any heavy library loads (issue 118, item 3; `tests/test_imports.py`).
The arrays inside are read by `feeds.calibration_feeds`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cp_debug.errors import BadInputError

CALIB_FORMS = ("--calib takes .npz files (keys as --inputs; each array one sample or a batch along a first axis): "
               "repeat it for several, or give a folder of them")
"""What every command that calibrates (bisect, fix, sweep, eval with --torch / --onnx) takes as `--calib`, said in
each of its refusals (`calib_files`)."""


def calib_files(given: "str | Path | Sequence[str | Path] | None") -> list[Path]:
    """The .npz files of `--calib` (one path or several, each a file or a folder of .npz files), the one reader of
    every command's `--calib`: a path missing, a folder without .npz or a file that is no .npz is one line naming
    what `--calib` takes (`CALIB_FORMS`, exit 2)."""
    import zipfile

    paths = [] if given is None else [given] if isinstance(given, (str, Path)) else list(given)
    files: list[Path] = []
    for path in map(Path, paths):
        found = sorted(path.glob("*.npz")) if path.is_dir() else [path] if path.is_file() else None
        if not found:
            why = "a folder with no .npz file in it" if path.is_dir() else "not found"
            raise BadInputError(f"--calib {path}: {why}; {CALIB_FORMS}")
        for f in found:  # an .npz is a zip archive: a file that is none said before any model loads
            if not zipfile.is_zipfile(f):
                raise BadInputError(f"--calib {f}: not a valid .npz file; {CALIB_FORMS}")
        files += found
    return files
