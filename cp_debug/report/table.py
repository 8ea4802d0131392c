"""The terminal view of a BisectReport: one rich table per candidate, then a summary panel.

Rows follow the refinement tree (a stage, then the layers it was refined into), indented by depth; the path
the search took is marked with "›", the first divergent probe and the root cause get their markers, and the
root cause's hint is printed under the table.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from cp_debug.bisect.phases import phases_line
from cp_debug.bisect.result import BisectReport, CandidateResult
from cp_debug.compare.diff import BROKEN
from cp_debug.report._format import (FIRST_DIVERGENT, ROOT_CAUSE, TIPS, Row, candidate_title, fmt_db, fmt_num,
                                     model_title, precision_line, rows, summary_line, third_party_line,
                                     tolerance_line, verdict)
from cp_debug.report import int8_rows

if TYPE_CHECKING:
    from rich.console import Console

STATUS_STYLE = {"ok": "green", "diverged": "bold red", "nan": "bold magenta", "inf": "bold magenta",
                "shape_mismatch": "bold yellow", "missing": "dim"}
REL_MAX = "max/\n|ref|max"  # max |diff| / max |ref| (the JSON keeps the per-element max_rel too)
TERMINAL_ROWS = 150  # bisect's table past this many rows: the story's rows, the largest local errors, counts between
VERDICT_STYLE = {"ok": "green", "diverged": "bold red", "error": "yellow", "unknown": "dim"}


def print_whole(console: "Console", table) -> None:
    """Print a rich `table` whose rows are not to break: on a terminal, fitted to its width (long names fold); in a
    file or a pipe, one row a line with every name whole (a probe's row is found with grep), as wide as its widest
    row, while the text around it wraps at the console's width (`cli.common.output.stdout_console`: 100 columns or
    COLUMNS)."""
    if console.is_terminal:
        console.print(table)
        return
    for column in table.columns:
        column.no_wrap = True
    _fixed_widths(console, table)
    width = console.width
    console.width = max(width, console.measure(table, options=console.options.update_width(100_000)).maximum)
    try:
        console.print(table)
    finally:
        console.width = width


def _fixed_widths(console: "Console", table) -> None:
    """Each column's width set to its widest line (header or cell, markup read as rich reads it) or its min_width,
    what rich would measure for a column of text that does not wrap: rich then measures no cell (twice, in
    `print_whole`), most of a long table's time. Nothing is set where a cell is no text (rich measures it)."""
    from rich.cells import cell_len
    from rich.text import Text

    if any(c.width is not None or c.max_width is not None for c in table.columns):
        return  # a width the caller chose, or a cap rich would crop to: rich measures
    widths = []
    for column in table.columns:
        widest = 0
        for cell in ((column.header,) if table.show_header else ()) + tuple(column.cells):
            text = console.render_str(cell) if isinstance(cell, str) else cell
            if not isinstance(text, Text):
                return
            widest = max(widest, *(cell_len(line) for line in text.plain.split("\n")))
        widths.append(max(widest, column.min_width or 0))
    for column, w in zip(table.columns, widths):
        column.width = w


def render_table(report: BisectReport, console: "Console", *, max_rows: int | None = None,
                 verbose: bool = False) -> None:
    """Print one table per candidate, the summary panel and the count of third-party warnings.

    `max_rows` elides runs of unremarkable "ok" rows (never a marked, diverged or on-path row) in long tables
    (`TERMINAL_ROWS` for bisect's own table);
    the INT8 quantization error shows its worst layers, all of them with `verbose`.
    """
    for cand in report.candidates:
        if cand.results:
            _render_candidate(report, cand, console, max_rows)
    render_int8_quantization(report, console, verbose=verbose)
    render_summary(report, console)
    line = third_party_line(report.third_party_warnings, verbose=verbose)
    if line:
        from rich.text import Text

        console.print(Text(line, style="dim"))


SUMMARY_TEXT_MIN = 40  # the summary box's verdict column: characters it keeps, whatever its labels


def render_summary(report: BisectReport, console: "Console") -> None:
    """The summary panel: reference, each candidate's verdict, precision notes, errors, warnings."""
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 1))
    # a label wraps in its own column (issue 117: `ort@out/bert_outlier/mo_int8 (ort-cpu-fp32@…, the file holds
    # int8)` left the verdict 6 characters, 150 lines): at most a third of the box, the verdict 40 at least
    inner = max(20, console.width - 4)
    grid.add_column(style="bold", overflow="fold", max_width=max(12, min(inner // 3, inner - SUMMARY_TEXT_MIN - 1)))
    grid.add_column(overflow="fold", min_width=min(SUMMARY_TEXT_MIN, inner // 2))  # a long probe name folds
    grid.add_row("reference", Text(report.reference))
    if report.facts is not None:
        grid.add_row("model", Text(model_title(report)))
    for cand in report.candidates:
        kind, text = verdict(cand)
        label = candidate_title(cand)
        grid.add_row(label, Text(text, style=VERDICT_STYLE[kind]))
        prec = precision_line(cand)
        if prec:
            grid.add_row("", Text(f"precision: {prec}", style="cyan"))
        tol = tolerance_line(report, cand)
        if tol:
            grid.add_row("", Text(tol, style="dim"))
        if cand.detections:
            changed = cand.detections.get("changed")
            grid.add_row("", Text(f"detections: {cand.detections.get('summary', '')}",
                                  style="yellow" if changed else "green"))
        for decision in cand.decisions:
            grid.add_row("", Text(f"decision: {decision.get('summary', '')}",
                                  style="yellow" if decision.get("changed") else "green"))
        if cand.wall_s is not None:
            # the candidate's share (its runs, comparisons, local errors), not the command's wall: a CPU bisect of
            # awml-base said "took 24.8 s" of its 108 s, the reference and the screen being the rest
            grid.add_row("", Text(f"its runs and comparisons took {fmt_num(cand.wall_s)} s", style="dim"))
    memory = memory_line(report.settings.get("peak_memory"))
    if memory:
        grid.add_row("memory", Text(memory, style="dim"))
    for w in report.warnings:
        grid.add_row(Text("warning", style="yellow"), Text(str(w)))
    kinds = {verdict(c)[0] for c in report.candidates}
    border = "red" if "diverged" in kinds else "yellow" if kinds & {"error", "unknown"} else "green"
    console.print(Panel(grid, title="cp_debug summary", border_style=border, expand=False))
    spent = phases_line(report.settings.get("phases"))  # outside the box: long, and wrapped at its words alone
    if spent:
        console.print(Text(spent, style="dim"))


def memory_line(peak: dict | None) -> str | None:
    """`peak host RSS 17.3 GB · GPU 4.1 GB (torch's peak 2.2 GB)` from the report's `settings.peak_memory`."""
    if not peak or not peak.get("host_rss_bytes"):
        return None
    text = f"peak host RSS {peak['host_rss_bytes'] / 1e9:.3g} GB"
    if peak.get("gpu_in_use_bytes") is not None:
        text += f" · GPU {peak['gpu_in_use_bytes'] / 1e9:.3g} GB in use at most"
        if peak.get("gpu_torch_peak_bytes") is not None:
            text += f" (torch's peak {peak['gpu_torch_peak_bytes'] / 1e9:.3g} GB)"
    return text


def render_int8_quantization(report: BisectReport, console: "Console", *, verbose: bool = False) -> None:
    """The per-layer quantization error of an INT8 run, worst input SQNR first; nothing for other runs."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    qrows = int8_rows.quant_rows(report)
    if not qrows:
        return
    shown = qrows if verbose else qrows[:int8_rows.TERMINAL_ROWS]
    table = Table(title=int8_rows.TITLE, title_justify="left", title_style="bold", header_style="bold",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    heads, cells = int8_rows.columns(shown)
    for head in heads:
        table.add_column(head.replace(" ", "\n", 1) if head in int8_rows.NUMERIC else head, overflow="fold",
                         justify="right" if head in int8_rows.NUMERIC else "left", no_wrap=head in int8_rows.NUMERIC)
    for row in cells:
        table.add_row(*row)
    print_whole(console, table)
    if len(shown) < len(qrows):
        more = len(qrows) - len(shown)
        console.print(Text(f"  … {more} more layer{'s' if more != 1 else ''}: bisect -v and the HTML page show all",
                           style="dim"))
    console.print(Text(f"  {int8_rows.CAPTION}", style="dim"))
    console.print()


def render_summary_line(report: BisectReport) -> str:
    """One plain line for logs and status bars: each candidate's verdict against the reference."""
    return summary_line(report)


def _render_candidate(report: BisectReport, cand: CandidateResult, console: "Console", max_rows: int | None) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    all_rows = rows(report, cand)
    width = max(len(r.probe) + 2 * r.depth + 2 for r in all_rows)
    short = 0 if console.width >= 150 else 1 if console.width >= 100 else 2  # the lines under the table spell
    # the markers out in full
    narrow = console.width < 115  # drop the op type and max/|ref|max columns
    table = Table(title=f"{cand.label} vs {report.reference}", title_justify="left", title_style="bold",
                  header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("#", justify="right", style="dim", no_wrap=True)
    table.add_column("probe", overflow="fold", min_width=min(width, max(16, console.width - 105)))
    if not narrow:
        table.add_column("op", style="dim", overflow="fold")
    metrics = ("max abs", "rel RMSE", "SNR dB", "local\nmax abs", "ampl.") if narrow else \
        ("max abs", REL_MAX, "rel RMSE", "SNR dB", "local\nmax abs", "ampl.")
    for name in metrics:
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("", no_wrap=True)

    shown = _elide(all_rows, max_rows)
    for row in shown:
        if isinstance(row, str):
            table.add_row("", Text(row, style="dim"), *[""] * (len(table.columns) - 2))
            continue
        r, d = row.result, row.result.diff
        amp = r.amplification
        values = {
            "max abs": fmt_num(d.max_abs if d else None),
            REL_MAX: fmt_num(d.rel_max if d else None),
            "rel RMSE": fmt_num(d.rel_rmse if d else None),
            "SNR dB": fmt_db(d.snr_db if d else None),
            "local\nmax abs": fmt_num(r.local.max_abs if r.local else None),
            "ampl.": "—" if amp is None else "×" + fmt_num(amp),
        }
        cells = ["" if row.index is None else str(row.index), _probe_cell(row, fold=console.is_terminal)]
        if not narrow:
            cells.append(row.op_type or "")
        cells += [values[m] for m in metrics]
        cells += [Text(r.status, style=STATUS_STYLE.get(r.status, "")), _marker(row, short)]
        table.add_row(*cells)
    print_whole(console, table)
    if len(shown) < len(all_rows):
        n = sum(not isinstance(r, str) for r in shown)
        console.print(Text(f"  {n} of {len(all_rows)} rows shown: the JSON and HTML reports hold every row "
                           "(`cpdebug report REPORT.json` prints them all)", style="dim"))
    if cand.path:
        console.print(Text("  path: ", style="dim") + Text(" → ".join(cand.path), style="cyan"))
    if cand.first_divergent:
        console.print(Text(f"  {FIRST_DIVERGENT}: {cand.first_divergent}", style="bold red"))
    if cand.root_cause:
        rc = cand.root_cause
        line = Text(f"  ≈ {rc.named}" if rc.tipped_by else f"  {ROOT_CAUSE}: {rc.title}", style="bold yellow")
        if cand.root_cause.hint:
            line.append(f" — {cand.root_cause.hint}", style="yellow")
        console.print(line)
    kind, text = verdict(cand)
    if not cand.first_divergent:
        console.print(Text(f"  {text}", style=VERDICT_STYLE[kind]))
    _render_notes(cand, console)
    console.print()


def _render_notes(cand: CandidateResult, console: "Console") -> None:
    """One line per reason: a module's calls that cannot be told apart share one."""
    from rich.text import Text

    notes: dict[str, list[str]] = {}
    for r in cand.results:
        if r.note:
            notes.setdefault(r.note, []).append(r.probe)
    for note, probes in list(notes.items())[:10]:
        who = probes[0] if len(probes) == 1 else f"{probes[0]} … {probes[-1]} ({len(probes)} probes)"
        console.print(Text(f"  note {who}: {note}", style="dim"))
    if len(notes) > 10:
        console.print(Text(f"  … {len(notes) - 10} more notes in the JSON report", style="dim"))


def _probe_cell(row: Row, fold: bool = True):
    """The probe name indented by depth, "›" on the search path; on a terminal (`fold`) a long name folds under
    itself. In a file or a pipe no row wraps (`print_whole`): there the same line as one Text, which rich measures
    and draws without the grid inside the cell (awml-base's `--level all` table: 0.25 → 0.1 s)."""
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    mark, name = Text("› " if row.on_path else "  ", style="bold cyan"), \
        Text(row.probe, style="bold" if (row.first_divergent or row.root_cause or row.tips) else "")
    if not fold:
        return Text(" " * (2 * row.depth)) + mark + name
    g = Table.grid()
    g.add_column(width=2, no_wrap=True)
    g.add_column(overflow="fold")
    g.add_row(mark, name)
    return Padding(g, (0, 0, 0, 2 * row.depth))


def _marker(row: Row, short: int):
    from rich.text import Text

    t = Text()
    if row.first_divergent:
        t.append((FIRST_DIVERGENT, "◀ first", "◀")[short], style="bold red")
    if row.root_cause:
        t.append(("\n" if row.first_divergent else "") + (ROOT_CAUSE, "★ root", "★")[short], style="bold yellow")
    if row.tips:
        t.append(("\n" if row.first_divergent else "") + (TIPS, "≈ tips", "≈")[short], style="bold yellow")
    return t


def _elide(all_rows: list[Row], max_rows: int | None) -> list[Row | str]:
    """Keep what tells the story — markers and their neighbours, the search path, the coarse (depth-0) probes,
    NaN/shape problems, rows with a local error — and replace each run of other rows by one counting line."""
    if not max_rows or len(all_rows) <= max_rows:
        return list(all_rows)
    tree = any(r.depth > 0 for r in all_rows)  # a refined run: its coarse probes are the overview
    keep = [bool(r.first_divergent or r.root_cause or r.tips or r.on_path or (tree and r.depth == 0)
                 or r.result.status in BROKEN or _local_beyond(r)) for r in all_rows]
    # rows with a local error tell where error enters: all of them while they fit, else the largest
    local = sorted((i for i, r in enumerate(all_rows) if not keep[i] and r.result.local is not None),
                   key=lambda i: -_local_size(all_rows[i]))
    room = len(local) if sum(keep) + len(local) <= max_rows else max(0, max_rows // 2 - sum(keep))
    for i in local[:room]:
        keep[i] = True
    keep[0] = keep[-1] = True
    for i, r in enumerate(all_rows):
        if r.first_divergent or r.root_cause or r.tips:
            for j in (i - 1, i + 1):
                if 0 <= j < len(keep):
                    keep[j] = True
    out: list[Row | str] = []
    run: list[Row] = []
    for r, k in zip(all_rows, keep):
        if not k:
            run.append(r)
            continue
        if run:
            out.append(_count_line(run))
            run = []
        out.append(r)
    if run:
        out.append(_count_line(run))
    return out


def _local_beyond(row: Row) -> bool:
    j = row.result.local_judgement
    return j is not None and j.beyond


def _local_size(row: Row) -> float:
    """A row's local error, to rank rows by: relative RMS (its max abs where that is not finite)."""
    d = row.result.local
    v = d.rel_rmse if d is not None else None
    return v if v is not None and math.isfinite(v) else float("inf")


def _count_line(run: list[Row]) -> str:
    from collections import Counter

    counts = Counter(r.result.status for r in run)
    if len(counts) == 1:
        (status, n), = counts.items()
        return f"… {n} {status} probe{'s' if n != 1 else ''} …"
    return f"… {len(run)} probes: " + ", ".join(f"{n} {s}" for s, n in counts.most_common()) + " …"


class Notes:
    """A table's long texts (a failed frame's error, a root cause's sentence) kept out of its cells (issue 117: a
    sweep's lines reached 1,515 characters): a cell says `[k]`, the text goes under the table, once per text."""

    WIDE = 60  # characters a cell holds as it is

    def __init__(self):
        self.texts: dict[str, int] = {}

    def cell(self, text: str | None) -> str:
        if not text:
            return ""
        text = str(text)
        if len(text) <= self.WIDE:
            return text
        k = self.texts.setdefault(text, len(self.texts) + 1)
        return f"[{k}] {text[:self.WIDE - 8].rsplit(' ', 1)[0]} …"

    def print(self, console) -> None:
        for text, k in self.texts.items():
            console.print(f"[{k}] {text}", markup=False, highlight=False)
