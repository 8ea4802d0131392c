"""`cpdebug sweep`: the per-frame divergence of every candidate over a validation set, ranked and explained.

One pass per frame and candidate compares the stage boundaries and the probes of a level with the reference
and diffs the decoded boxes (the frame loop `worker.py`, on the lanes of `lanes.py`, judged by `judge.py`, into the
records of `records.py`); frames run in shards written whole (`shards.py`) by one executor, in process or on Ray
(`executor.py`); frames are ranked and classed layer-local or uniform (`rank.py`), the worst ones bisected, the
metrics computed with bootstrap intervals (`metrics.py`) and everything written as `sweep.json`, `frames.parquet`
and `report.html` (`report.py`, its verdict line `verdict.py`, the page `report_html.py`, the terminal's table and
the JUnit suite `summary.py`). `session.py` joins the parts.
"""
