"""Trained models whose weights ship in PyPI wheels, each judged at its application's decision, and cp_debug's
answer on them against a right answer found without it, by intervention (issue 115, items 4 and 6).

    pip install silero-vad nudenet            # 11 MB + 11 MB wheels; the weights load from the installed package
    python benchmarks/trained_corpus.py [--models silero-vad,nudenet] [--candidates fp16,int8] [--out DIR]
        [--answers tests/data/trained_corpus.json]   # write the right answers found (else: read and check them)

Per model × candidate (`fp16`: onnxconverter-common's float16 with its `node_block_list`; `int8`: ONNX Runtime's
quantize_static, Q/DQ, its defaults, calibrated on the model's own samples, with `nodes_to_exclude`):
1. the decision: silero-vad's speech flag per 32 ms frame (probability ≥ 0.5, the state carried frame to frame, as
   `get_speech_timestamps` reads it); nudenet's boxes after its own post-processing (score ≥ 0.2, NMS 0.25 / 0.45:
   class and box rounded to 8 px);
2. the right answer, by intervention: the candidate unchanged keeps every decision → "healthy"; else each node
   the conversion touched is kept out of it alone (FP32 / not quantized) and the nodes that alone bring every
   decision back are the answer ("none alone" where no single one does);
3. cp_debug: `cpdebug bisect --onnx MODEL --inputs SAMPLE -b ort-cpu,ort@DIR` on the candidate file, at the sample
   whose decision moves (else the first one), with its outcome, exit code and root cause;
4. the scorecard: right where a healthy candidate is neither flagged nor refused, and a broken one's root cause
   is one of the nodes that alone bring the decision back.
Nothing is downloaded at run time: the models are the wheels' files (importlib.metadata), the samples are made here
(a voiced vowel with formants after half a second of room noise; matplotlib's `grace_hopper.jpg` portrait).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ANSWERS = ROOT / "tests" / "data" / "trained_corpus.json"
sys.path.insert(0, str(ROOT))

from tests.trained.corpus import MODELS, make, right_answer, session  # noqa: E402 - the corpus lives beside its tests


# -- cp_debug on the candidate file ----------------------------------------------------------------------------
def bisect(spec, kind: str, model, feeds, sample: int, work: Path) -> dict:
    import onnx

    calib = feeds[:: max(1, len(feeds) // 8)]
    (work / "cand").mkdir(parents=True, exist_ok=True)
    onnx.save(model, work / "model.onnx")
    onnx.save(make(kind, model, calib), work / "cand" / "model.onnx")
    np.savez(work / "sample.npz", **feeds[sample])
    proc = subprocess.run([sys.executable, "-m", "cp_debug.cli.main", "bisect", "--onnx", str(work / "model.onnx"),
                           "--inputs", str(work / "sample.npz"), "-b", f"ort-cpu,ort@{work / 'cand'}", "--json",
                           str(work / "r.json"), "--quiet"], capture_output=True, text=True, cwd=ROOT)
    if not (work / "r.json").exists():
        return {"exit": proc.returncode, "outcome": "refused", "root_cause": None,
                "said": (proc.stderr.strip().splitlines() or [""])[-1][:200]}
    rep = json.loads((work / "r.json").read_text())
    cand = rep["candidates"][0]
    root = (rep.get("root_cause") or {}).get(cand)
    node = None
    if root:
        probe = (rep.get("probes") or {}).get(root) if isinstance(rep.get("probes"), dict) else None
        node = (probe or {}).get("node") if isinstance(probe, dict) else None
    return {"exit": proc.returncode, "outcome": (rep.get("outcomes") or {}).get(cand), "root_cause": root,
            "node": node, "said": (rep.get("outcome_reasons") or {}).get(cand, "")[:200]}


def right(ans: dict, got: dict) -> bool:
    if ans["healthy"]:
        return got["outcome"] in ("within_precision", "degraded")
    if got["outcome"] in ("refused", "within_precision", "not_run_as_asked", None):
        return False
    names = {got.get("root_cause"), got.get("node")}
    return any(n and any(n == r or n.endswith(r) or r.endswith(n) for r in ans["restoring"]) for n in names)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--candidates", default="fp16,int8")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "trained_corpus")
    ap.add_argument("--answers", type=Path, default=None, help="write the right answers found here")
    ap.add_argument("--no-cpdebug", action="store_true", help="the right answers only")
    args = ap.parse_args(argv)
    known = json.loads(ANSWERS.read_text()) if ANSWERS.exists() else {}
    found, rows = {}, []
    for name in args.models.split(","):
        spec = MODELS[name]
        model = spec.model()
        ref_run = session(model)
        feeds = spec.samples(ref_run)
        ref = spec.decisions(ref_run, feeds)
        for kind in args.candidates.split(","):
            ans = right_answer(spec, kind, model, feeds, ref)
            found[f"{name}/{kind}"] = ans
            was = known.get(f"{name}/{kind}")
            same = "" if was is None else (" (as stored)" if was["healthy"] == ans["healthy"] else " (STORED DIFFERS)")
            what = "healthy" if ans["healthy"] else (f"{ans['moved']}/{ans['of']} decisions move; alone restoring: "
                                                     f"{', '.join(ans['restoring'][:5]) or 'none alone'}")
            row = f"{name:11s} {kind:5s} right answer: {what}{same}"
            if not args.no_cpdebug:
                got = bisect(spec, kind, model, feeds, ans["sample"], args.out / name / kind)
                ok = right(ans, got)
                row += (f"\n{'':17s} cp_debug: {got['outcome']} (exit {got['exit']}), root cause {got['root_cause']}"
                        f" — {'RIGHT' if ok else 'WRONG'}\n{'':17s} {got['said']}")
                rows.append(ok)
            print(row, flush=True)
    if args.answers:
        args.answers.write_text(json.dumps(found, indent=1) + "\n")
    if rows:
        print(f"scorecard: {sum(rows)} of {len(rows)} right")
    return 0


if __name__ == "__main__":
    sys.exit(main())
