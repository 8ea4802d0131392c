"""The cheap drawing of the HTML pages' plots: log ticks in plain unicode (no mathtext) that label what matplotlib
labels, and fixed margins that keep every label of the error plot on the page, long probe names included."""

from __future__ import annotations

import numpy as np
import pytest

from cp_debug.bisect.result import BisectReport, CandidateResult, Probe, ProbeResult, RootCause
from cp_debug.compare.diff import TensorDiff, Tolerance
from cp_debug.report.figure import (drawn_tick_labels, equal_aspect_size, fit_margins, new_figure, plain_log_ticks,
                                     plain_math)
from cp_debug.report.html import errors_figure
from tests.report.page_check import drawn_texts, off_page


def test_plain_math_writes_matplotlibs_log_labels_in_unicode():
    assert plain_math(r"$\mathdefault{10^{-3}}$") == "10⁻³"
    assert plain_math(r"$\mathdefault{2\times10^{-3}}$") == "2×10⁻³"
    assert plain_math(r"$\mathdefault{10^{12}}$") == "10¹²"
    assert plain_math(r"$\mathdefault{-10^{0}}$") == "−10⁰"
    assert plain_math("") == "" and plain_math("0.5") == "0.5"


@pytest.mark.parametrize("lim", [(1e-9, 1e4), (1.2e-3, 6e-3)])  # many decades: decades only; less than one: minors
def test_plain_log_ticks_label_the_ticks_matplotlib_labels(lim):
    from matplotlib.colors import LogNorm

    fig = new_figure(4, 3, layout=None)
    ours, theirs = fig.subplots(1, 2)
    for ax in (ours, theirs):
        ax.set_yscale("log")
        ax.set_ylim(*lim)
    plain_log_ticks(ours.yaxis)
    want = [plain_math(t.get_text()) for t in drawn_tick_labels(theirs.yaxis)]
    got = [t.get_text() for t in drawn_tick_labels(ours.yaxis)]
    assert got == want and any(got) and not any("$" in t for t in got)

    im = ours.imshow(np.geomspace(*lim, 16).reshape(4, 4), norm=LogNorm())
    cb = fig.colorbar(im, ax=ours)
    plain_log_ticks(cb)
    labels = [t.get_text() for t in drawn_tick_labels(cb.long_axis)]
    assert any(labels) and not any("$" in t for t in labels)


def _report(n: int) -> BisectReport:
    """n probes with awml-scale names (the long ones shortened on the axis), a NaN near the end."""
    rng = np.random.default_rng(0)
    tol = Tolerance(atol=2e-2, rtol=2e-2)
    probes, results = [], []
    for i in range(n):
        name = f"pts_backbone.blocks.{i // 14}.{i % 14}" + (".conv_module.bn_act_relu" if i % 3 == 0 else "")
        probes.append(Probe(i, name, f"/{name}/out", "Conv", "pts", None, 0))
        ref = rng.normal(size=(2, 4))
        cand = ref + rng.normal(size=ref.shape) * 1e-6 * 10 ** (7 * i / n)
        cand[0, 0] = np.nan if i == n - 2 else cand[0, 0]
        d = TensorDiff.from_arrays(name, ref, cand, tol)
        results.append(ProbeResult(name, d.status, d))
    first = next(r.probe for r in results if r.status != "ok")
    cand = CandidateResult("ort-cpu-fp16", "ort-cpu-fp16", results, first_divergent=first,
                           root_cause=RootCause(first, "hint"))
    return BisectReport("torch", [cand], probes)


@pytest.mark.parametrize("n", [40, 41])  # a name under every probe; an axis of indices and the root cause named
def test_every_label_of_the_error_plot_is_on_the_page(n):
    report = _report(n)
    fig = errors_figure(report, report.candidates[0], {"atol": 2e-2, "rtol": 2e-2})
    texts = drawn_texts(fig)
    renderer = fig.canvas.get_renderer()
    names = [t.get_text() for t in texts]
    assert "NaN" in names
    if n <= 40:  # every probe named below the axis, the long names shortened from the left
        assert sum(t.startswith("…") and t.endswith("bn_act_relu") for t in names) == len(range(0, n, 3))
    else:  # the root cause named beside its star
        assert report.candidates[0].root_cause.probe in names
    assert off_page(fig, texts) == []
    ax1, ax2 = fig.axes
    below = [t.get_window_extent(renderer) for t in ax2.get_xticklabels() if t.get_text()]
    assert len(below) == (n if n <= 40 else len(below)) and all(b.y1 <= ax2.bbox.y0 for b in below)
    assert ax2.bbox.y1 < ax1.bbox.y0  # the panels do not overlap


def test_fit_margins_sizes_the_figure_around_axes_of_the_size_asked():
    """`axes=`: the axes get that size in inches, the figure grows by the labels' margins, none clipped (the sweep's
    pictures: what `bbox_inches="tight"` cropped); `equal_aspect_size` keeps the view's aspect within a box."""
    fig = new_figure(4, 4, layout=None)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([-30.0, 10.0], [0.0, 20.0])
    ax.set_title("a title")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("a long label of the y axis")
    w, h = equal_aspect_size(ax, 3.0, 3.0)
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    assert w == 3.0 and h == pytest.approx(3.0 * (y1 - y0) / (x1 - x0)) and h < 3.0
    fit_margins(fig, ax, axes=(w, h))
    texts = drawn_texts(fig)
    assert off_page(fig, texts) == [] and "a long label of the y axis" in [t.get_text() for t in texts]
    box = ax.get_window_extent()
    assert box.width / fig.dpi == pytest.approx(w) and box.height / fig.dpi == pytest.approx(h)
    assert fig.get_size_inches()[0] < 4.0  # cropped to what it draws
