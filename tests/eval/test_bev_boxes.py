"""The BEV maps of the eval and replay pages draw a layer's boxes as one LineCollection: the strokes a Line2D a box
drew, in one artist (150 boxes: ~0.15 CPU s less a picture)."""

from __future__ import annotations

import numpy as np
import pytest

from cp_debug.eval.html import box_corners, draw_boxes
from cp_debug.report.figure import new_figure

BOXES = np.array([[0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.3], [8.0, 1.0, 0.0, 2.0, 1.0, 1.0, -1.2],
                  [-7.0, 6.0, 0.0, 1.0, 3.0, 1.0, 2.0]])


def _pixels(draw) -> np.ndarray:
    fig = new_figure(3, 3, layout=None)
    ax = fig.add_axes((0, 0, 1, 1))
    draw(ax)
    ax.set_xlim(-12, 12)
    ax.set_ylim(-8, 12)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())


@pytest.mark.parametrize("style", ["-", "--", ":"])
def test_draw_boxes_strokes_the_pixels_of_a_line_a_box(style):
    def one_line_a_box(ax):
        for b in BOXES:
            c = box_corners(b)
            ax.plot(c[:, 0], c[:, 1], style, color="#c62828", lw=1.1)

    ours = _pixels(lambda ax: draw_boxes(ax, BOXES, "boxes", "#c62828", style))
    assert np.array_equal(ours, _pixels(one_line_a_box)) and (ours[..., 0] != 255).any()


def test_draw_boxes_labels_a_layer_with_boxes_and_scales_the_view_to_them():
    fig = new_figure(3, 3, layout=None)
    ax = fig.add_subplot(1, 1, 1)
    draw_boxes(ax, BOXES, "reference", "#1f5fbf", "-", headings=True)
    draw_boxes(ax, np.zeros((0, 7)), "nothing", "#c62828", "--")
    assert [t.get_text() for t in ax.legend().get_texts()] == ["reference"]
    corners = np.concatenate([box_corners(b) for b in BOXES])
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x0 < corners[:, 0].min() and corners[:, 0].max() < x1 and y0 < corners[:, 1].min() < corners[:, 1].max() < y1
