"""What a test of a picture checks: every text it draws lies on the figure, none clipped at its edges."""

from __future__ import annotations

from cp_debug.report.figure import drawn_tick_labels


def drawn_texts(fig) -> list:
    """Every Text `fig` draws, drawn first: titles, axis labels, legend entries, and the tick labels within view
    (matplotlib keeps labels of ticks outside the view too, undrawn)."""
    from matplotlib.text import Text

    fig.canvas.draw()
    axes = [axis for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)]
    ticks = {id(t) for axis in axes for t in axis.get_ticklabels(which="both")}
    texts = [t for t in fig.findobj(Text) if id(t) not in ticks] + [t for a in axes for t in drawn_tick_labels(a)]
    return [t for t in texts if t.get_visible() and t.get_text()]


def off_page(fig, texts) -> list[str]:
    """The `texts` of `fig` that reach past its edges (half a pixel of slack)."""
    renderer, page = fig.canvas.get_renderer(), fig.bbox
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    return [s for s, b in boxes if not (page.x0 - 0.5 <= b.x0 and b.x1 <= page.x1 + 0.5
                                        and page.y0 - 0.5 <= b.y0 and b.y1 <= page.y1 + 0.5)]
