"""frames.parquet of a sweep (a row per frame x candidate x probe), made on a helper thread beside the metrics over
the set (issue 87, item 2: at 6000 awml-base frames the file took 2.1-3.2 s after the metrics' 8 s, end to end).

The rows need the frames ranked (and re-ranked by `--bisect-top`), which is what the metrics wait on too: the two
are independent after that. pandas and pyarrow are imported on the caller's thread (`imports.load`) before the
helper starts, so that the helper imports nothing beside the metrics' own imports (`cp_debug/imports.py`).
"""

from __future__ import annotations

import io
import math
import threading
from typing import BinaryIO


def _imported() -> bool:
    """pandas and pyarrow's parquet writer imported here; False where they cannot be (the file is then made when
    written, and says why there, as before)."""
    from cp_debug.imports import load

    try:
        for name in ("pandas", "pyarrow", "pyarrow.parquet", "pyarrow.pandas_compat"):
            load(name)
    except ImportError:
        return False
    return True


class FramesFile:
    """frames.parquet's bytes for `outcome`, made on a helper thread (`ahead`) or when first written."""

    def __init__(self, outcome, ahead: bool = True):
        """`outcome`: a `session.SweepOutcome`, its frames ranked."""
        self._outcome, self._data, self._error = outcome, None, None
        self._thread = None
        if ahead and _imported():
            self._thread = threading.Thread(target=self._make, name="cpdebug-frames-file", daemon=True)
            self._thread.start()

    def _make(self) -> None:
        try:
            buf = io.BytesIO()
            frame_rows(self._outcome).to_parquet(buf, index=False)
            self._data = buf.getvalue()
        except BaseException as err:  # noqa: BLE001 - raised again where the file is written
            self._error = err

    def write_to(self, f: BinaryIO) -> None:
        """The file's bytes into `f` (made now where no helper made them); what making them raised, raised here."""
        if self._thread is not None:
            self._thread.join()
        elif self._data is None and self._error is None:
            self._make()
        if self._error is not None:
            raise self._error
        f.write(self._data)


def frame_rows(outcome):
    """The pandas frame of frames.parquet: a row per frame x candidate x probe (a failed frame: one row)."""
    import pandas as pd

    from cp_debug.sweep.rank import ratio

    rank = {r.index: r for r in outcome.ranked}
    rows = []
    for res in outcome.results:
        rf = rank[res.index]
        base = {"token": res.token, "index": res.index, "rank": rf.rank, "status": rf.status, "class": rf.klass,
                "reason": res.reason, "num_points": res.num_points}
        if not res.candidates:
            rows.append({**base, "candidate": None, "probe": None})
        for c in res.candidates:
            d = c.detections
            for p in c.probes:
                s = outcome.spreads.get((c.candidate, p.probe))
                rows.append({**base, "candidate": c.candidate, "probe": p.probe, "order": p.order,
                             "rel_rmse": p.rel_rmse, "rel_max": p.rel_max, "cosine": p.cosine, "max_abs": p.max_abs,
                             "nan": p.nan, "inf": p.inf, "probe_status": p.status,
                             "ratio_to_median": ratio(p.rel_rmse, s.median) if s else math.nan,
                             "expected_rel_rmse": p.expected_rel_rmse, "noise_ratio": p.noise_ratio,
                             "outcome": rf.outcome.value if rf.outcome is not None else None,
                             "lost": d.lost, "added": d.added, "matched": d.matched,
                             "max_centre_shift": d.max_centre_shift, "max_score_change": d.max_score_change,
                             "max_yaw_change": d.max_yaw_change})
    return pd.DataFrame(rows)


def sample_rows(result, doc: dict):
    """The pandas frame of a sample sweep's frames.parquet (`samples.SampleSweep` and its sweep.json `doc`): a row
    per sample x candidate x output (a failed sample: one row), its rank, status and shape as sweep.json says them."""
    import pandas as pd

    frames = {f["index"]: f for f in doc.get("frames", [])}
    rows = []
    for res in result.results:
        f = frames.get(res.index, {})
        shape = ";".join(f"{n}={'x'.join(map(str, s))}" for n, s in (f.get("shape") or {}).items()) or None
        base = {"token": res.token, "index": res.index, "rank": f.get("rank"), "status": res.status,
                "reason": res.reason, "shape": shape}
        if not res.candidates:
            rows.append({**base, "candidate": None, "probe": None})
        for c in res.candidates:
            for p in c.probes:
                rows.append({**base, "candidate": c.candidate, "outcome": c.outcome, "outcome_reason": c.reason,
                             "probe": p.probe, "order": p.order, "rel_rmse": p.rel_rmse, "rel_max": p.rel_max,
                             "cosine": p.cosine, "max_abs": p.max_abs, "nan": p.nan, "inf": p.inf,
                             "probe_status": p.status, "expected_rel_rmse": p.expected_rel_rmse,
                             "noise_ratio": p.noise_ratio})
    return pd.DataFrame(rows)
