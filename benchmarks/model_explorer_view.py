"""Screenshot `cpdebug bisect --model-explorer DIR` in Google Model Explorer, served locally, in headless Chromium.

Starts Model Explorer's own server (`model_explorer.server.start`, host 127.0.0.1, the ONNX adapter extension
`model_explorer_onnx`, no browser of its own), opens one stage's `url_data` from DIR/index.json (the reference left,
the candidate right, every layer expanded, max/|ref|max as node data on both) in headless Chromium through
playwright with every request off the local server refused, selects the first node of the reference whose status is
diverged/NaN (its mapped node on the right), uploads the stage's sync mapping in the right pane's Sync menu, and
writes two PNGs: the split pane, and the candidate's graph alone (opened by its own `?data=`). It prints the
console errors, the refused requests (network assets the web app asks for) and the server's own errors.

    python benchmarks/model_explorer_view.py DIR --stage pts_backbone_neck_head [--candidate ort-cpu-fp16] \
        --shot me.png [--split-shot me-split.png]

Needs `pip install -e '.[model-explorer]' playwright` and a Chromium (see html_check.py).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from html_check import PageLog, chromium  # this script's folder is on sys.path when it runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_bad_node(doc: dict, threshold: float = 2.0) -> str | None:
    """The first node (in the file's order, the graph's topological order) whose status is >= `threshold`."""
    (graph,) = doc.values()
    return next((n for n, r in graph["results"].items() if r["value"] >= threshold), None)


def serve(port: int, log: Path) -> subprocess.Popen:
    code = ("from model_explorer import server\n"
            f"server.start(host='127.0.0.1', port={port}, no_open_in_browser=True, "
            "extensions=['model_explorer_onnx'])\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=log.open("w"), stderr=subprocess.STDOUT)
    for _ in range(240):
        if proc.poll() is not None or "Starting Model Explorer server" in log.read_text():
            break
        time.sleep(0.5)
    if proc.poll() is not None:
        raise SystemExit(f"model explorer server exited: {log.read_text()[-2000:]}")
    return proc


def open_graphs(page, base: str, data: dict, panes: int, timeout_s: float) -> None:
    """Open Model Explorer with `data` (its `?data=` parameter) and wait until `panes` graphs are drawn."""
    t0 = time.perf_counter()
    page.goto(f"{base}/?data=" + urllib.parse.quote(json.dumps(data)))
    page.wait_for_function(f"document.querySelectorAll('canvas').length >= {panes}", timeout=timeout_s * 1000)
    page.wait_for_timeout(8000)  # the layout runs in a web worker, then WebGL draws
    print(f"{panes} graph(s) drawn after {time.perf_counter() - t0:.1f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--stage", default="pts_backbone_neck_head")
    ap.add_argument("--candidate", help="candidate label (default: the stage's first)")
    ap.add_argument("--shot", type=Path, required=True, help="PNG of the candidate's graph with its node data")
    ap.add_argument("--split-shot", type=Path, help="PNG of the split pane (reference left, candidate right)")
    ap.add_argument("--timeout", type=float, default=180.0)
    args = ap.parse_args(argv)
    index = json.loads((args.dir / "index.json").read_text())
    stage = next(s for s in index["stages"] if s["stage"] == args.stage)
    label = args.candidate or next(iter(stage["candidates"]))
    files = stage["candidates"][label]
    data = json.loads(json.dumps(files["url_data"]))
    sync = json.loads((args.dir / files["sync"]).read_text())
    left = first_bad_node(json.loads((args.dir / files["reference_data"]["status"]).read_text()))
    if left is not None:
        right = next((e["rightNodeIds"][0] for e in sync["mappingEntries"] if e["leftNodeIds"] == [left]), "")
        data["uiState"]["paneStates"][0]["selectedNodeId"] = left
        data["uiState"]["paneStates"][1]["selectedNodeId"] = right
        print(f"selected: {left} (reference) / {right or '(not mapped)'} ({label})")
    single = {"models": data["models"][1:], "nodeData": data["nodeData"][1:],
              "nodeDataTargets": data["nodeDataTargets"][1:],
              "uiState": {"paneStates": [{**data["uiState"]["paneStates"][1], "widthFraction": 1}]}}
    port = free_port()
    server_log = Path(tempfile.mkstemp(suffix=".log")[1])
    server = serve(port, server_log)
    base = f"http://127.0.0.1:{port}"
    problems = 0
    try:
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1800, "height": 1100})
            log = PageLog(page, (base,))
            if args.split_shot:
                open_graphs(page, base, data, 2, args.timeout)
                page.get_by_text("Sync", exact=True).first.click()
                page.get_by_text("Upload mapping from computer").click()
                with page.expect_file_chooser() as chooser:
                    page.get_by_role("button", name="Upload").click()
                chooser.value.set_files(str(args.dir / files["sync"]))
                page.wait_for_timeout(1500)
                page.keyboard.press("Escape")
                page.wait_for_timeout(1000)
                page.screenshot(path=str(args.split_shot))
                print(f"split pane: {args.split_shot}")
            open_graphs(page, base, single, 1, args.timeout)
            page.screenshot(path=str(args.shot))
            print(f"candidate: {args.shot}")
            # the server's event stream is cut when the page navigates to the second view: not a failure
            failed = [f for f in log.failed if not (f["url"].endswith("/apistream/server_director")
                                                    and f["error"] == "net::ERR_ABORTED")]
            for kind, items in (("console error", log.errors()), ("page error", log.page_errors),
                                ("refused request", log.blocked), ("failed request", failed)):
                for item in items:
                    print(f"  {kind}: {item}")
            problems = len(log.errors()) + len(log.page_errors) + len(failed)
    finally:
        server.terminate()
        server.wait(10)
    bad = [line for line in server_log.read_text().splitlines() if "Traceback" in line or "Error" in line]
    for line in bad:
        print(f"  server: {line}")
    server_log.unlink()
    return 1 if problems or bad else 0


if __name__ == "__main__":
    sys.exit(main())
