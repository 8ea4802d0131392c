from __future__ import annotations

from rich.console import Console

from cp_debug.bisect.result import BisectReport, CandidateResult, Probe, ProbeResult
from cp_debug.compare.diff import TensorDiff
from cp_debug.report._format import fmt_num, rows
from cp_debug.report.table import render_summary_line, render_table
from tests.report.sample import FP16, FP32, HINT, PLANTED, PROBES


def _render(report, width=200, **kw) -> str:
    console = Console(record=True, width=width, color_system=None)
    render_table(report, console, **kw)
    return console.export_text()


def test_table_shows_probes_markers_hint_and_summary(report):
    out = _render(report)
    for p in PROBES:
        assert p.name in out
    assert "◀ first divergent" in out and "★ root cause" in out
    assert HINT in out
    assert "path: pts_backbone.blocks.1 → " + PLANTED in out
    # the marker sits on the planted probe's row
    row = next(line for line in out.splitlines() if PLANTED in line and "Conv" in line)
    assert "◀ first divergent" in row and "diverged" in row
    # summary panel: verdicts, precision notes, tolerance, the unavailable backend, warnings
    assert f"diverged at {PLANTED}" in out
    assert "within tolerance" in out
    assert "could not run: TensorRT is not installed" in out
    assert "all 12 Conv nodes ran in float16" in out
    assert "atol 0.02" in out
    assert "noise floor: the reference repeats bit-exactly" in out
    assert "not exported by this recipe" in out
    # a candidate's time is said as its own share, not as the command's (sample: wall_s 1.234)
    assert "its runs and comparisons took 1.23 s" in out


def test_rows_follow_the_refinement_tree(report):
    names = [r.probe for r in rows(report, report.candidate(FP16))]
    assert names.index("pts_backbone.blocks.1") < names.index(PLANTED) < names.index("pts_neck")
    assert names[-1] == "pts_bbox_head.reg"  # a result without a known probe still shows
    depth = {r.probe: r.depth for r in rows(report, report.candidate(FP16))}
    assert depth[PLANTED] == 1 and depth["pts_neck"] == 0


def test_narrow_consoles_do_not_lose_the_story(report):
    for width in (80, 110, 130):
        out = _render(report, width=width)
        assert f"◀ first divergent: {PLANTED}" in out
        assert "★ root cause: " + PLANTED in out


def test_max_rows_elides_what_does_not_tell_the_story():
    probes = [Probe(i, f"layer{i}", None, "Conv") for i in range(60)]
    res = []
    for p in probes:
        test = 1.0 + (1.0 if p.index >= 30 else 0.0)
        d = TensorDiff.from_arrays(p.name, [1.0, 2.0], [test, 2.0])
        res.append(ProbeResult(p.name, d.status, d))
    res[45] = ProbeResult("layer45", "nan", TensorDiff.from_arrays("layer45", [1.0], [float("nan")]))
    rep = BisectReport("torch", [CandidateResult("ort", "ort-cpu-fp32", res, first_divergent="layer30")], probes)
    out = _render(rep, max_rows=10)
    for kept in ("layer0 ", "layer29", "layer30", "layer31", "layer45", "layer59"):
        assert kept in out
    assert "layer10" not in out and "layer40" not in out
    assert "… 28 ok probes …" in out and out.count("… 13 diverged probes …") == 2
    assert len(_render(rep)) > len(out)


def test_a_long_lockstep_table_keeps_the_largest_local_errors():
    """Every row of a lockstep has a local error: past `max_rows` (bisect's terminal: `TERMINAL_ROWS`) the rows kept
    are the largest local errors, the first and the last, and a line says how many of how many are shown."""
    from cp_debug.report.table import TERMINAL_ROWS

    n = 2 * TERMINAL_ROWS
    probes = [Probe(i, f"layer{i}", None, "Conv") for i in range(n)]
    res = []
    for p in probes:
        local = 1e-4 * (1 + p.index % 7) * (50.0 if p.index in (123, 201) else 1.0)
        d = TensorDiff.from_arrays(p.name, [1.0, 2.0], [1.0 + 1e-4, 2.0])
        res.append(ProbeResult(p.name, d.status, d, TensorDiff.from_arrays(p.name, [1.0, 2.0], [1.0 + local, 2.0])))
    rep = BisectReport("ort", [CandidateResult("ort-cpu-fp16", "ort-cpu-fp16", res)], probes)
    out = _render(rep, max_rows=TERMINAL_ROWS)
    shown = [line.split()[1] for line in out.splitlines()
             if line.strip().split(" ")[0].isdigit() and line.split()[1].startswith("layer")]
    assert {"layer0", "layer123", "layer201", f"layer{n - 1}"} <= set(shown)
    assert len(shown) <= TERMINAL_ROWS // 2 + 2
    assert f"{len(shown)} of {n} rows shown" in out
    assert f"{n} of {n} rows shown" not in _render(rep) and len(_render(rep).splitlines()) > n


def test_summary_line(report):
    line = render_summary_line(report)
    assert "\n" not in line
    assert f"{FP16}: diverged at {PLANTED}" in line and f"{FP32}: within tolerance" in line
    assert "trt-fp16: could not run" in line


def test_fmt_num_is_compact():
    assert fmt_num(0.000012345) == "1.23e-5"
    assert fmt_num(0.5) == "0.5"
    assert fmt_num(123.456) == "123"
    assert fmt_num(1234.5) == "1234"
    assert fmt_num(123456.0) == "1.23e5"
    assert fmt_num(0) == "0"
    assert fmt_num("inf") == "inf" and fmt_num(float("-inf")) == "-inf" and fmt_num("nan") == "nan"
    assert fmt_num(None) == "—"


def test_a_file_table_is_the_one_rich_measures_itself(report, monkeypatch):
    """In a file or a pipe the probe cell is one Text and every column gets its widest line as a fixed width
    (`_fixed_widths`), so that rich measures no cell: the text is what rich's own measurement of the grid cells
    gives, at every width, coloured or not, with markers, depths and elided rows."""
    import io

    from cp_debug.report import table

    def rendered(width: int, colour, max_rows) -> str:
        buf = io.StringIO()
        render_table(report, Console(file=buf, width=width, force_terminal=False, color_system=colour),
                     max_rows=max_rows)
        return buf.getvalue()

    cases = [(w, c, m) for w in (80, 100, 160) for c in (None, "truecolor") for m in (None, 4)]
    fast = [rendered(*case) for case in cases]
    grid_cell = table._probe_cell
    with monkeypatch.context() as m:  # rich's own measurement of the cells, the probe names in their grids
        m.setattr(table, "_fixed_widths", lambda console, t: None)
        m.setattr(table, "_probe_cell", lambda row, fold=True: grid_cell(row, fold=True))
        measured = [rendered(*case) for case in cases]
    assert fast == measured
    assert any("…" in out or "rows shown" in out for out in fast)  # an elided table among them
    assert all(PLANTED in out for out in fast)



def test_a_long_candidate_label_wraps_in_its_own_column(report):
    """Issue 117: `ort@out/bert_outlier/mo_int8 (ort-cpu-fp32@…, the file holds int8)` as a label squeezed the
    verdict column to 6 characters (150 lines): the label wraps in a third of the box, the verdict keeps 40."""
    from dataclasses import replace

    long = "ort@out/bert_outlier/some/deeper/folder/of/the/user/mo_int8"
    cand = replace(report.candidates[0], label=long, spec="ort-cpu-fp32@out/bert_outlier/some/deeper/folder/mo_int8")
    rep = replace(report, candidates=[cand])
    for width in (100, 200):
        console = Console(record=True, width=width, color_system=None)
        from cp_debug.report.table import render_summary

        render_summary(rep, console)
        box = console.export_text().splitlines()
        verdict_lines = [line for line in box if line.startswith("│")]
        # the label's column at most a third of the box: every line's text after it has room
        widths = [len(line.rstrip("│ ").split("│", 1)[-1]) for line in verdict_lines]
        assert max(widths) <= width and len(verdict_lines) < 40, "\n".join(box)
        label_cols = min(len(line) - len(line[1:].lstrip()) for line in verdict_lines[1:] if line[1:].startswith(" "))
        assert label_cols <= width // 3 + 3, "\n".join(box)
        joined = "".join(line[2:width // 3 + 1].strip() for line in verdict_lines)
        assert "mo_int8" in joined  # the label whole, wrapped, not cut
