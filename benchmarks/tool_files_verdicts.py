"""cp_debug's verdict on every file of the real-tool corpus (tests/data/tool_files, issue 107), beside its right
answer: `cpdebug bisect --onnx SOURCE -b ort,ort@DIR` and `--torch models.py:FUNC -b torch,ort@DIR` for each case,
a row each with the outcome, the root cause and its reason's first words, and whether it agrees.

    python benchmarks/tool_files_verdicts.py [--only PREFIX] [--level LEVEL] [--json OUT]

Agreement: a refused file exits 3; a healthy file, or a plant the network hides (cases.json's within_precision), is
within precision (or degraded with no root cause); a planted one is not within precision and its root cause (probe
or its hint) names the planted module or node, the second layer the plant breaks where cases.json says one, or the
BatchNorm folded into that conv — diverged and degraded both count (the corpus's own word is its generator's rule: a
layer-local fault may be either here). Where cases.json says FP16 done in FP16 diverges (`fp16_arithmetic`) while ONNX
Runtime's CPU hides it, that answer counts too: cp_debug rounds float16 storage as a GPU does."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "tool_files"


def run(case: dict, path: str, level: str | None) -> dict:
    folder = (DATA / case["file"]).parent
    inputs = DATA / case["inputs"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        if path == "onnx":
            args = ["--onnx", str(DATA / case["source"]), "--inputs", str(inputs), "-b", f"ort,ort@{folder}"]
        else:
            # the variant's build() gives the sample inputs itself (the .npz is keyed by the file's input names)
            args = ["--torch", str(ROOT / case["torch"]), "-b", f"torch,ort@{folder}"]
        args += ["--level", level] if level else []
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "cp_debug.cli.main", "bisect", *args, "--json", str(out), "-q"],
                              capture_output=True, text=True, cwd=ROOT)
        seconds = round(time.perf_counter() - started, 1)
        row = {"case": case["id"], "path": path, "exit": proc.returncode, "seconds": seconds}
        if out.is_file():
            report = json.loads(out.read_text())
            cand = report["candidates"][0]
            root = (report.get("root_cause") or {}).get(cand) or {}
            rows = report["results"][cand]
            row.update(outcome=(report.get("outcomes") or {}).get(cand), root=root.get("probe"),
                       hint=(root.get("hint") or "")[:160], compared=sum(r["status"] != "missing" for r in rows),
                       probes=len(rows))
        else:
            row["error"] = (proc.stderr.strip().splitlines() or ["(no output)"])[-1][:200]
    row["agrees"] = agrees(case["expected"], row)
    return row


def agrees(expected: dict, row: dict) -> bool:
    if expected["outcome"] == "refused":
        return row["exit"] == 3
    if expected.get("fp16_arithmetic", {}).get("outcome") == "diverged" and row["exit"] == 1:
        expected = {**expected, "outcome": "diverged"}  # FP16 done in FP16, as cp_debug's float16 storage does it
    if expected["outcome"] == "within_precision":  # a plant the network hides (an outlier masked downstream) too
        return row["exit"] == 0 or (row.get("outcome") == "degraded" and not row.get("root"))
    also = (expected["root_cause"].get("also") or "").split(" (")[0]  # a second layer the plant breaks, where said
    names = [expected["root_cause"].get("module") or "", *(expected["root_cause"].get("nodes") or []), also]
    # the exporters fold a BatchNorm into the conv before it: the BN's probe holds the conv's value (conv1 → bn1)
    names += [n.replace(".conv", ".bn") for n in names if ".conv" in n]
    said = f"{row.get('root') or ''} {row.get('hint') or ''}"
    slashed = [n.replace(".", "/") for n in names if n]
    return row["exit"] in (1, 4) and any(n and (n in said or n.replace(".", "/") in said) for n in names + slashed)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--level", default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    cases = [c for c in json.loads((DATA / "cases.json").read_text())["cases"]
             if not c.get("skipped") and c["id"].startswith(args.only) and c.get("source")]
    rows = []
    for case in cases:
        for path in ("onnx", "torch"):
            row = run(case, path, args.level)
            rows.append(row)
            mark = "ok " if row["agrees"] else "XX "
            print(f"{mark}{row['case']:<48} {path:<5} exit {row['exit']} {row.get('outcome') or '-':<16} "
                  f"{row.get('compared', '-')}/{row.get('probes', '-')} root {row.get('root')} "
                  f"| {row.get('hint') or row.get('error') or ''}"[:260], flush=True)
    good = sum(r["agrees"] for r in rows)
    print(f"{good} of {len(rows)} agree with the right answer")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
