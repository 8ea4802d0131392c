"""The replay's per-frame, per-variant rows as Parquet, written whole or not at all."""

from __future__ import annotations

import io
import os
from pathlib import Path

from cp_debug.errors import BadInputError
from cp_debug.files import write_bytes_atomic
from cp_debug.replay.report import ReplayReport


def write_parquet(report: ReplayReport, path: str | os.PathLike) -> Path:
    from cp_debug.imports import optional

    optional("pyarrow", "--parquet needs pyarrow: pip install 'cp-debug[parquet]'", error=BadInputError)
    buf = io.BytesIO()
    report.to_frame().to_parquet(buf, index=False, engine="pyarrow")
    return write_bytes_atomic(path, buf.getvalue())
