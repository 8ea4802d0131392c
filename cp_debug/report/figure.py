"""matplotlib figures for the HTML pages: a Figure on the Agg canvas (no display needed), its PNG bytes, and the
inline <img> tag that embeds them. Shared by the bisect page (`html.py`), its BEV pictures (`bev_plot.py`) and the
eval and replay pages.

Two helpers keep the drawing cheap (measured on the bisect page's error plot, ~1.4 CPU-s before): `fixed_margins`
places the axes by margins in inches instead of the constrained layout, whose tight-bbox passes over every tick
label took ~40 % of a plot; `plain_log_ticks` writes log-axis labels as plain unicode (10⁻³) instead of mathtext
($10^{-3}$), whose pyparsing parse took ~0.3 s a plot. `fit_margins(axes=...)` also sizes the figure around its
axes, as `savefig(bbox_inches="tight")` crops it without that option's extra draw (the sweep page: 1.3 -> 0.85 s).
"""

from __future__ import annotations

import base64
import functools
import io
from html import escape

_SUPERSCRIPT = str.maketrans("0123456789-−", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁻")


def new_figure(w: float, h: float, layout: str | None = "constrained", dpi: float = 100):
    """A matplotlib Figure of w × h inches on the Agg canvas (no display needed); `figure_png` renders it at `dpi`.
    `layout=None` for figures placed by `fixed_margins` or `subplots_adjust` (the constrained layout costs seconds
    where there are many panels or tick labels)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=dpi, layout=layout)
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


def fixed_margins(fig, *, left: float, bottom: float, right: float, top: float, hgap: float = 0.0) -> None:
    """Place the axes of `fig` (made with `layout=None`) by margins in inches, `hgap` inches between rows."""
    w, h = fig.get_size_inches()
    rows = max((ax.get_subplotspec().get_gridspec().nrows for ax in fig.axes if ax.get_subplotspec()), default=1)
    inner = h - top - bottom
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h,
                        hspace=rows * hgap / max(inner - (rows - 1) * hgap, 1e-6))


def text_size(fig, texts) -> tuple[float, float]:
    """(width, height) in inches of the largest of `texts` (matplotlib Text artists) as drawn, rotation included."""
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts if t.get_visible() and t.get_text()]
    return (max((b.width for b in boxes), default=0.0) / fig.dpi, max((b.height for b in boxes), default=0.0) / fig.dpi)


def fit_margins(fig, ax, *, right: float = 0.15, pad: float = 0.06, axes: tuple[float, float] | None = None) -> None:
    """Margins of a one-axes figure (made with `layout=None`) from what its title, tick labels and axis labels
    measure, in one pass (the constrained layout measures every tick label twice per draw, ~0.3 s a plot).
    `axes`: the axes' (width, height) in inches; the figure is sized to them and the margins, as
    `savefig(bbox_inches="tight")` crops it, without that option's extra draw (~0.3 s a sweep picture)."""
    title = text_size(fig, [ax.title, ax._left_title, ax._right_title])[1]  # matplotlib names no public handle
    top = pad + (title + 6 / 72 if title else 0.0)  # the title's pad: 6 pt
    bottom = pad + axis_depth(fig, ax.xaxis)
    _place(fig, axes, left=0.8, bottom=bottom, right=right, top=top)  # the y ticks depend on the height only
    left = pad + axis_depth(fig, ax.yaxis)
    _place(fig, axes, left=left, bottom=bottom, right=right, top=top)


def _place(fig, axes: tuple[float, float] | None, *, left: float, bottom: float, right: float, top: float) -> None:
    if axes is not None:
        fig.set_size_inches(left + axes[0] + right, bottom + axes[1] + top)
    fixed_margins(fig, left=left, bottom=bottom, right=right, top=top)


def axis_depth(fig, axis) -> float:
    """Inches that `axis` (`ax.xaxis`, `ax.yaxis`, a colorbar's `long_axis`) takes beside its axes: its tick labels,
    ticks (3.5 pt and a 3.5 pt pad) and its label (4 pt pad)."""
    across = 1 if axis.axis_name == "x" else 0  # a horizontal axis takes height, a vertical one width
    labels = text_size(fig, drawn_tick_labels(axis))[across]
    name = text_size(fig, [axis.label])[across]
    return labels + 0.1 + (name + 4 / 72 if name else 0.0)


def equal_aspect_size(ax, w: float, h: float) -> tuple[float, float]:
    """The largest (width, height) in inches within w × h where the view of `ax` (autoscaled to its data) is drawn
    at an equal aspect: `fit_margins(axes=...)` then leaves no blank band beside a BEV map."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    ratio = abs(y1 - y0) / max(abs(x1 - x0), 1e-12)
    return (w, w * ratio) if w * ratio <= h else (h / ratio, h)


def drawn_tick_labels(axis) -> list:
    """The tick labels (major and minor) that `axis` draws: those of its ticks within the view."""
    lo, hi = sorted(axis.get_view_interval())
    pairs = [*zip(axis.get_majorticklocs(), axis.get_majorticklabels()),
             *zip(axis.get_minorticklocs(), axis.get_minorticklabels())]
    return [t for v, t in pairs if lo <= v <= hi]


def plain_log_ticks(*targets) -> None:
    """The tick labels of log-scaled `targets` (matplotlib Axis objects such as `ax.yaxis`, or Colorbars) as
    matplotlib would label them, written in plain unicode (10⁻³, 2×10⁻³) rather than mathtext. Call it after the
    scale is set (set_yscale, a colorbar made); a colorbar on a linear scale is left as it is."""
    cls = _plain_log_formatter()
    for target in targets:
        if hasattr(target, "long_axis"):  # a Colorbar: it re-applies its own formatter when it updates
            if target.long_axis.get_scale() == "log":
                target.formatter, target.minorformatter = cls(), cls()
        else:
            target.set_major_formatter(cls())
            target.set_minor_formatter(cls())


@functools.cache
def _plain_log_formatter():
    from matplotlib.ticker import LogFormatterSciNotation

    class PlainLogFormatter(LogFormatterSciNotation):
        """matplotlib's own choice of which ticks to label and how (`LogFormatterSciNotation`), without mathtext."""

        def __call__(self, x, pos=None):
            return plain_math(super().__call__(x, pos))

    return PlainLogFormatter


def plain_math(s: str) -> str:
    r"""A tick label of matplotlib's log formatters in plain unicode: $\mathdefault{2\times10^{-3}}$ -> 2×10⁻³."""
    if not (s.startswith("$") and s.endswith("$")):
        return s
    s = s.strip("$").replace(r"\mathdefault{", "", 1)
    s = s[:-1] if s.endswith("}") else s
    s = s.replace(r"\times", "×").replace("-", "−")
    out, i = [], 0
    while i < len(s):
        if s.startswith("^{", i):
            end = s.index("}", i)
            out.append(s[i + 2:end].translate(_SUPERSCRIPT))
            i = end + 1
        else:
            out.append(s[i])
            i += 1
    return "".join(out)
