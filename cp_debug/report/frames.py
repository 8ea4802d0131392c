"""A BisectReport as a pandas DataFrame (one row per candidate × probe) and its CSV / Parquet files.

The columns are the JSON result keys (docs/schemas/report.schema.json) plus `candidate`, `index`, `op_type`, `depth`,
`stage`, `first_divergent`, `root_cause` and `on_path`; the JSON's "nan"/"inf" strings become real floats here.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from cp_debug.bisect.result import BisectReport, ProbeResult
from cp_debug.errors import BadInputError
from cp_debug.report._format import as_float, rows
from cp_debug.files import write_bytes_atomic, write_text_atomic

if TYPE_CHECKING:
    import pandas as pd

# The keys ProbeResult.to_json writes, in its order (taken from a real empty result, so they never drift).
RESULT_KEYS: tuple[str, ...] = tuple(ProbeResult("", "missing").to_json())
LEADING = ("candidate", "index", "probe", "op_type", "depth", "stage")
FLAGS = ("first_divergent", "root_cause", "on_path")
_NUMERIC = ("max_abs", "mean_abs", "max_rel", "rmse", "cosine", "snr_db", "local_max_abs", "amplification",
            "rel_rmse", "share_beyond", "ref_absmax", "test_absmax", "local_rel_rmse", "rel_max")


def columns() -> list[str]:
    return list(LEADING) + [k for k in RESULT_KEYS if k not in LEADING] + list(FLAGS)


def to_frame(report: BisectReport) -> "pd.DataFrame":
    """One row per candidate × probe, in each candidate's display order (refinement tree)."""
    import pandas as pd

    stage = {p.name: p.stage for p in report.probes}
    records = []
    for cand in report.candidates:
        for row in rows(report, cand):
            rec = {"candidate": cand.label, "index": row.index, "probe": row.probe, "op_type": row.op_type,
                   "depth": row.depth, "stage": stage.get(row.probe)}
            for k, v in row.result.to_json().items():
                if k != "probe":
                    rec[k] = as_float(v) if k in _NUMERIC else v
            rec.update(first_divergent=row.first_divergent, root_cause=row.root_cause, on_path=row.on_path)
            records.append(rec)
    df = pd.DataFrame.from_records(records, columns=columns())
    if not records:
        return df
    for k in _NUMERIC:
        df[k] = df[k].astype("float64")
    for k in ("nan", "inf"):
        df[k] = df[k].astype("int64")
    df["index"] = df["index"].astype("Int64")
    df["depth"] = df["depth"].astype("int64")
    for k in FLAGS:
        df[k] = df[k].astype(bool)
    return df


def write_csv(report: BisectReport, path: str | os.PathLike) -> Path:
    df = to_frame(report)
    for k in ("ref_shape", "test_shape"):  # "1x64x128x128" reads better in a spreadsheet than a list literal
        df[k] = df[k].map(lambda s: "x".join(str(n) for n in s) if isinstance(s, (list, tuple)) else s)
    return write_text_atomic(path, df.to_csv(index=False))


def write_parquet(report: BisectReport, path: str | os.PathLike) -> Path:
    from cp_debug.imports import optional

    optional("pyarrow", "--parquet needs pyarrow: pip install 'cp-debug[parquet]'", error=BadInputError)
    buf = io.BytesIO()
    to_frame(report).to_parquet(buf, index=False, engine="pyarrow")
    return write_bytes_atomic(path, buf.getvalue())
