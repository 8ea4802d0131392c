from __future__ import annotations

import io

import pandas as pd
import pytest

from cp_debug.bisect.result import ProbeResult
from cp_debug.errors import BadInputError
from cp_debug.report.frames import to_frame, write_csv, write_parquet
from tests.report.sample import FP16, FP32, PLANTED

JSON_KEYS = list(ProbeResult("x", "ok").to_json())


def test_frame_has_a_row_per_candidate_probe_and_the_json_columns(report):
    df = to_frame(report)
    assert set(JSON_KEYS) <= set(df.columns)
    assert {"candidate", "index", "op_type", "first_divergent", "root_cause"} <= set(df.columns)
    assert len(df) == sum(len(c.results) for c in report.candidates)
    fd = df[df.first_divergent]
    assert list(fd.candidate) == [FP16] and list(fd.probe) == [PLANTED]
    assert list(df[df.root_cause].probe) == [PLANTED]
    assert df.max_abs.dtype == "float64" and df.first_divergent.dtype == bool
    row = df[(df.candidate == FP16) & (df.probe == PLANTED)].iloc[0]
    assert row.op_type == "Conv" and row["index"] == 3 and row.status == "diverged"
    assert (df[df.candidate == FP32].status == "ok").all()


def test_csv_has_the_json_result_columns(report, tmp_path):
    path = write_csv(report, tmp_path / "run.csv")
    back = pd.read_csv(path)
    assert set(JSON_KEYS) <= set(back.columns)
    assert len(back) == len(to_frame(report))
    assert back.loc[back.probe == PLANTED, "ref_shape"].iloc[0] == "1x4x32x32"
    assert back.loc[(back.candidate == FP16) & (back.probe == PLANTED), "root_cause"].iloc[0]


def test_parquet(report, tmp_path):
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(BadInputError, match=r"--parquet needs pyarrow: pip install 'cp-debug\[parquet\]'"):
            write_parquet(report, tmp_path / "run.parquet")
        assert not list(tmp_path.iterdir())
        return
    path = write_parquet(report, tmp_path / "run.parquet")
    back = pd.read_parquet(io.BytesIO(path.read_bytes()))
    assert len(back) == len(to_frame(report))


def test_empty_report_gives_an_empty_frame_with_columns(report):
    report.candidates = []
    df = to_frame(report)
    assert df.empty and "max_abs" in df.columns
