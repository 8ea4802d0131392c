from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html import escape

import pytest

from cp_debug.errors import BadInputError
from cp_debug.report.html import render_html, write_html
from tests.report.sample import FP16, HINT, PLANTED, build_report

PNG = b"\x89PNG\r\n\x1a\n"
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> str:
    """The sample report's page with its plots, written once for the two tests that read a whole page (drawing the
    plots is most of a render); a warning holding a script tag is among its warnings."""
    report = build_report()
    report.warnings.append(SCRIPT)
    return write_html(report, tmp_path_factory.mktemp("html") / "run.html").read_text(encoding="utf-8")


def _pngs(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img[^>]+src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_html_is_one_self_contained_page(page):
    html = page
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert '<table class="probes">' in html and PLANTED in html and escape(HINT) in html
    assert "◀ first divergent" in html and "★ root cause" in html
    assert "could not run: TensorRT is not installed" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from elsewhere
    pngs = _pngs(html)
    assert len(pngs) >= 3  # errors along the model (x2 candidates) + histogram + heat map
    for png in pngs:
        assert png.startswith(PNG) and len(png) > 5000


def test_html_without_plot_data_still_plots_the_errors(report):
    report.plots = {}
    report.candidates = [report.candidate(FP16)]
    pngs = _pngs(render_html(report))
    assert len(pngs) == 1 and pngs[0].startswith(PNG)


def test_html_escapes_names(page):
    html = page
    assert f'<td class="warn">{escape(SCRIPT)}</td>' in html  # shown among the warnings, as text
    assert "<script" not in html.lower()  # the page runs no script, the warning's included
    assert not re.search(r'(src|href)="(https?:)?//', html)  # one self-contained file


def test_write_html_into_a_file_path_fails_cleanly(report, tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("")
    with pytest.raises(BadInputError, match=r"^cannot write .*run\.html: not a directory$"):
        write_html(report, blocker / "run.html")


@pytest.mark.skipif(not shutil.which("chromium"), reason="chromium is not installed")
def test_chromium_renders_the_page(report, tmp_path):
    np = pytest.importorskip("numpy")
    from PIL import Image

    path = write_html(report, tmp_path / "run.html")
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1400,2400", path.as_uri()],
                   check=True, capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    assert img.shape[:2] == (2400, 1400)
    # Not a blank page: the plots and tables put real ink on it, top to bottom.
    for band in (img[:800], img[800:1600], img[1600:]):
        assert band.std() > 20
    red = (img[..., 0] > 150) & (img[..., 1] < 90) & (img[..., 2] < 90)
    assert red.sum() > 200  # diverged badges, verdict and the first-divergent line are drawn in red
