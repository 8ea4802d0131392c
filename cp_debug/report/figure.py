"""matplotlib figures for the HTML pages: a Figure on the Agg canvas (no display needed), its PNG bytes, and the
inline <img> tag that embeds them. Shared by the bisect page (`html.py`), its BEV pictures (`bev_plot.py`) and the
eval and replay pages.
"""

from __future__ import annotations

import base64
import io
from html import escape


def new_figure(w: float, h: float, layout: str | None = "constrained"):
    """A matplotlib Figure of w × h inches on the Agg canvas (no display needed); `figure_png` renders it.
    `layout=None` for many panels placed by `subplots_adjust` (the constrained layout costs seconds there)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig) -> bytes:
    """`fig` as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def img_tag(png: bytes, alt: str) -> str:
    """An <img> holding `png` inline (base64), for the bisect and eval pages."""
    return f'<img class="plot" alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
