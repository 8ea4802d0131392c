"""Rendering a run (floor 8): tables, JSON, CSV/Parquet, HTML.

The terminal table (`table.py`), the HTML page (`html.py`; INT8's per-layer section `int8_html.py` over
`int8_rows.py`), a report as a DataFrame and its CSV / Parquet files (`frames.py`), reports read back (`io.py`),
JUnit XML (`junit.py`), Google Model Explorer files (`model_explorer.py`); the BEV maps in metres and peak flips
(`bev.py`), drawn (`bev_plot.py`) on the figures of `figure.py` (matplotlib on the Agg canvas, its PNG and `<img>`:
the pages of bisect, eval and replay), a Rerun recording (`rerun_export.py`). `report/bev.py` takes the decode and
head names from the caller (`BevScene` carries the subject's).
"""
