"""The HTML section of an INT8 run's per-layer quantization error: every layer, worst input SQNR first."""

from __future__ import annotations

from html import escape

from cp_debug.bisect.result import BisectReport
from cp_debug.report import int8_rows


def int8_section(report: BisectReport) -> str:
    """`<section id="int8-quantization">…</section>`, or "" when the report has no `model.int8.quantization`."""
    qrows = int8_rows.quant_rows(report)
    if not qrows:
        return ""
    heads, cells = int8_rows.columns(qrows)
    num = [h in int8_rows.NUMERIC for h in heads]
    head = "".join(f'<th class="{"num" if n else ""}">{escape(h)}</th>' for h, n in zip(heads, num))
    body = "\n".join("<tr>" + "".join(f'<td class="{"num" if n else "probe" if i == 0 else ""}">{escape(c)}</td>'
                                      for i, (c, n) in enumerate(zip(row, num))) + "</tr>" for row in cells)
    return (f'<section id="int8-quantization"><h2>{escape(int8_rows.TITLE)}</h2>'
            f'<div class="note">{len(qrows)} quantized layer{"s" if len(qrows) != 1 else ""}; '
            f"{escape(int8_rows.CAPTION)}</div>\n"
            f'<table class="int8q"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table></section>')
