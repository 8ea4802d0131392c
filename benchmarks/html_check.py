"""Open an HTML report in headless Chromium with the network blocked: console errors, failed requests, a screenshot.

cp_debug's HTML reports are one file each and must open without network (issue 35). This loads FILE through
playwright (python) in a headless Chromium where every request that is not the file itself (or a `data:`/`blob:`
URL) is refused, waits for the page to settle, and reports:

  - console messages of type error (and warnings with --warnings), uncaught page errors;
  - every request the page tried: those blocked (a network asset the file still depends on) and those that failed;
  - the page's size, its <img>/<svg> count and how many images did not decode;
  - a full-page screenshot (--shot PNG).

Exit 0 when there is no console error, page error or blocked/failed request; 1 otherwise; 2 when FILE is missing.
Needs `pip install playwright` and a Chromium: playwright's own download, or the system's (`--chromium PATH`,
default /usr/bin/chromium when it exists).

    python benchmarks/html_check.py report.html --shot report.png [--width 1400] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

SYSTEM_CHROMIUM = "/usr/bin/chromium"
# software WebGL (Model Explorer draws its graph with WebGL; headless Chromium has no GPU here)
CHROMIUM_ARGS = ["--no-sandbox", "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


@contextlib.contextmanager
def chromium(executable: str | None = None):
    """A headless Chromium browser from playwright (the system's Chromium when playwright has none of its own)."""
    from playwright.sync_api import sync_playwright

    if executable is None and os.path.exists(SYSTEM_CHROMIUM):
        executable = SYSTEM_CHROMIUM
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class PageLog:
    """What a page said and asked for: console messages, page errors, requests blocked or failed."""

    def __init__(self, page, allowed_prefixes: tuple[str, ...]):
        self.console: list[dict] = []
        self.page_errors: list[str] = []
        self.blocked: list[str] = []
        self.failed: list[dict] = []
        self._allowed = allowed_prefixes + ("data:", "blob:", "about:")
        page.on("console", lambda m: self.console.append({"type": m.type, "text": m.text}))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("requestfailed", self._request_failed)
        page.route("**/*", self._route)

    def _route(self, route):
        url = route.request.url
        if url.startswith(self._allowed):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def _request_failed(self, request):
        if request.url not in self.blocked:
            self.failed.append({"url": request.url, "error": request.failure})

    def errors(self, warnings: bool = False) -> list[dict]:
        kinds = ("error", "warning") if warnings else ("error",)
        # a blocked request also shows as a console error "Failed to load resource": counted once, as blocked
        return [m for m in self.console if m["type"] in kinds
                and not (self.blocked and m["text"].startswith("Failed to load resource"))]


def check(path: Path, shot: Path | None, width: int = 1400, height: int = 900, settle_s: float = 1.0,
          executable: str | None = None, warnings: bool = False) -> dict:
    url = path.resolve().as_uri()
    with chromium(executable) as browser:
        page = browser.new_page(viewport={"width": width, "height": height})
        log = PageLog(page, (url,))
        t0 = time.perf_counter()
        page.goto(url, wait_until="load")
        load_s = time.perf_counter() - t0
        page.wait_for_timeout(settle_s * 1000)
        facts = page.evaluate("""() => ({
            height: document.documentElement.scrollHeight,
            images: document.images.length,
            broken_images: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length,
            svgs: document.querySelectorAll('svg').length,
            title: document.title})""")
        if shot is not None:
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
    return {"file": str(path), "bytes": path.stat().st_size, "load_s": round(load_s, 3), **facts,
            "console_errors": log.errors(warnings), "page_errors": log.page_errors, "blocked_requests": log.blocked,
            "failed_requests": log.failed, "screenshot": str(shot) if shot else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", type=Path)
    ap.add_argument("--shot", type=Path, help="write a full-page screenshot here (PNG)")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--settle", type=float, default=1.0, help="seconds to wait after the load event")
    ap.add_argument("--chromium", help=f"Chromium executable (default: playwright's, else {SYSTEM_CHROMIUM})")
    ap.add_argument("--warnings", action="store_true", help="count console warnings as errors too")
    ap.add_argument("--json", type=Path, help="write the findings as JSON")
    args = ap.parse_args(argv)
    if not args.html.is_file():
        print(f"html_check: {args.html} is not a file", file=sys.stderr)
        return 2
    res = check(args.html, args.shot, args.width, settle_s=args.settle, executable=args.chromium,
                warnings=args.warnings)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    bad = res["console_errors"] + res["page_errors"] + res["blocked_requests"] + res["failed_requests"]
    print(f"{res['file']}: {res['bytes'] / 1e6:.2f} MB, loaded in {res['load_s']} s, page {res['height']} px high, "
          f"{res['images']} images ({res['broken_images']} not decoded), {res['svgs']} svg")
    for kind in ("console_errors", "page_errors", "blocked_requests", "failed_requests"):
        for item in res[kind]:
            print(f"  {kind[:-1].replace('_', ' ')}: {item}")
    if res["screenshot"]:
        print(f"  screenshot: {res['screenshot']}")
    print("  OK: no console error, no network request" if not bad else f"  {len(bad)} problem(s)")
    return 1 if bad or res["broken_images"] else 0


if __name__ == "__main__":
    sys.exit(main())
