"""frames.parquet made on a helper thread beside the metrics (`sweep/frames_file.py`): the rows `frame_rows` gives,
and what making them raised, raised where the file is written."""

from __future__ import annotations

import io

import pytest

pytest.importorskip("pyarrow")

from cp_debug.sweep.frames_file import FramesFile, frame_rows  # noqa: E402
from cp_debug.sweep.rank import rank_frames  # noqa: E402
from cp_debug.sweep.records import CandidateFrame, DetectionDelta, FrameResult, ProbeStat  # noqa: E402
from cp_debug.sweep.session import SweepOutcome  # noqa: E402


def _outcome(n: int = 30) -> SweepOutcome:
    results = []
    for i in range(n):
        e = 1e-3 * (1 + i % 7) * (50 if i == 11 else 1)
        probes = tuple(ProbeStat(p, k, e * (k + 1), e, 1.0, e, 0, 0, "ok") for k, p in enumerate(("a", "b")))
        d = DetectionDelta(10, 10, 10, 0, 0, 0.0, 0.0, 0.0, 0.0, False)
        cand = (CandidateFrame("cand", probes, d, True),)
        results.append(FrameResult(i, f"f{i}", "within_precision", None, 100, cand))
    results.append(FrameResult(n, f"f{n}", "failed", "OSError: cannot read"))
    ranked, spreads = rank_frames(results)
    return SweepOutcome(results, ranked, spreads)


def test_the_file_made_beside_the_metrics_holds_the_rows_made_when_written():
    import pandas as pd

    outcome = _outcome()
    ahead, now = io.BytesIO(), io.BytesIO()
    FramesFile(outcome).write_to(ahead)
    FramesFile(outcome, ahead=False).write_to(now)
    got = pd.read_parquet(io.BytesIO(ahead.getvalue()))
    pd.testing.assert_frame_equal(got, pd.read_parquet(io.BytesIO(now.getvalue())))
    pd.testing.assert_frame_equal(got, frame_rows(outcome))
    assert len(got) == 30 * 2 + 1 and got["status"].iloc[-1] == "failed"


def test_what_making_the_file_raised_is_raised_where_it_is_written():
    outcome = _outcome()
    outcome.ranked = outcome.ranked[:-1]  # a frame without its rank: frame_rows fails on the helper
    made = FramesFile(outcome)
    with pytest.raises(KeyError):
        made.write_to(io.BytesIO())
