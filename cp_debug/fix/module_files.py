"""A generic fix (`fix/module.py`) as a folder, written whole or not at all, and read back by `fix --check DIR`.

DIR holds the file to deploy (`model_fp16.onnx`: FP16 with the kept nodes in FP32 through explicit Casts;
`model_int8.onnx`: the Q/DQ model, the excluded nodes left in float), the FP32 graph it was judged against
(`model_fp32.onnx`), the held-out samples it was verified on (`verify_<sample>.npz`, keyed by the graph's input
names), `nodes_to_exclude.json` ({file: nodes}, as CenterPoint's fix writes it), `fix.json` (schema `cp_debug.fix/1`;
`model.kind` "graph" is what `fix --check` reads it by) and a README.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cp_debug.backends.spec import BackendSpec
from cp_debug.errors import BadInputError
from cp_debug.fix.graph_verification import GraphVerification
from cp_debug.fix.module import FILES, MODEL_KIND, QUANTIZED, REFERENCE, REFERENCE_FILE
from cp_debug.fix.toolchain import CheckedFix

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.fix.metric import MetricFigures
    from cp_debug.fix.module import GraphFix

VERIFY_PREFIX = "verify_"


def is_graph_fix(doc: dict) -> bool:
    return (doc.get("model") or {}).get("kind") == MODEL_KIND


def fix_json(fix: "GraphFix") -> dict:
    """fix.json of a generic fix, less its `files` (added when written)."""
    import datetime

    import cp_debug
    from cp_debug.fix.artifact import SCHEMA
    from cp_debug.fix.toolchain import toolchain

    from cp_debug.compare.diff import default_tolerance

    t = default_tolerance(fix.kind)
    nodes = list(fix.search.keep or ())
    ops = {n.name: n.op_type for n in fix.model.graph.node}
    mods = {n: fix.node_modules.get(n) for n in nodes}
    s = {"keep_fp32" if fix.kind == "fp16" else "nodes_to_exclude": nodes, "onnx_nodes": {fix.file: nodes},
         "modules": sorted({m for m in mods.values() if m}), "node_modules": mods,
         "nodes": [{"name": n, "op_type": ops.get(n), "module": mods[n]} for n in nodes]}
    if fix.kind == "int8":
        s["onnxruntime"] = {"nodes_to_exclude": nodes,
                            "call": f"quantize_static(..., quant_format=QuantFormat.QDQ, nodes_to_exclude={nodes!r})"}
    if fix.kind in QUANTIZED:  # ModelOpt's lists (its ONNX quantizer takes int8 and fp8; NVFP4 / MXFP8: its torch
        # path, where these nodes' layers are the ones to disable)
        s["modelopt"] = {"nodes_to_exclude": nodes, "op_types_to_exclude": []}
        if fix.kind in ("int8", "fp8"):
            s["modelopt"]["command"] = (f"python -m modelopt.onnx.quantization --onnx_path={REFERENCE_FILE} "
                                        f"--quantize_mode={fix.kind}"
                                        + (" --nodes_to_exclude " + " ".join(nodes) if nodes else ""))
    search = fix.search.to_json()
    after = fix.search.figures_of(nodes) if fix.search.keep is not None else ()
    search["samples"] = [{"sample": b.sample, "before": b.to_json(), "after": a.to_json() if a else None}
                         for b, a in itertools.zip_longest(fix.search.figures_of(()), after) if b is not None]
    budget = f"{fix.kind.upper()}'s precision budget (atol {t.atol:g}, rtol {t.rtol:g}, share {t.max_share:g})"
    return {
        "schema": SCHEMA, "kind": fix.kind, "status": fix.search.status, "preset": None, "weights": None,
        "source": {"from": "torch" if "torch" in fix.source else "onnx"},
        "backends": {"reference": REFERENCE, "candidate": str(fix.spec)},
        "model": {"kind": MODEL_KIND, **fix.source, "file": fix.file, "reference_file": REFERENCE_FILE},
        "judged_against": f"the FP32 graph ({REFERENCE_FILE}) in ONNX Runtime on the CPU",
        "target": {"tolerance": {"atol": t.atol, "rtol": t.rtol, "max_share": t.max_share}},
        "target_text": f"every graph output of every sample within {budget}", "tolerance_mode": "model",
        "outcome": None, "search_frames": fix.split.to_json(), "held_out_verification": fix.split.held_out,
        "calibration": list(fix.calibration) if fix.kind in QUANTIZED else None, "set": s, "search": search,
        "verification": {**fix.verification.to_json(), "holds": fix.holds} if fix.verification else None,  # --metric's
        "notes": list(fix.notes),
        "metric": metric_json(fix.metric), "shape_range": fix.split.shape_range,
        "environment": toolchain(), "cp_debug_version": cp_debug.__version__,
        "written_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def metric_json(parts) -> dict | None:
    """fix.json's `metric` (None: no --metric): its name and its figures per part (`held_out`, `search`)."""
    if not parts:
        return None
    return {"name": parts[0].name, **{p.part: p.to_json() for p in parts}}


def write_graph_fix(out: str | Path, fix: "GraphFix", doc: dict) -> Path:
    """Write DIR whole (`quant.ptq_checkpoint.write_dir_atomically`): nothing of it is left where a write fails."""

    from cp_debug.files import write_json
    from cp_debug.fix.artifact import EXCLUDE_JSON, FIX_JSON, README, sha256
    from cp_debug.graph.onnx_files import save_onnx
    from cp_debug.samples.sets import save_sample
    from cp_debug.quant.ptq_checkpoint import write_dir_atomically

    if fix.fixed is None:
        raise BadInputError("no set meets the target: nothing to write (the figures say why)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is a file; give a directory")

    def write(tmp: Path) -> None:
        save_onnx(fix.fixed, tmp / fix.file)  # past 2 GiB its weights beside it: FILE.data
        save_onnx(fix.model, tmp / REFERENCE_FILE)
        for sample in fix.split.verify:
            save_sample(tmp / f"{VERIFY_PREFIX}{sample.name}.npz", sample)
        (tmp / README).write_text(readme(doc))
        write_json(tmp / EXCLUDE_JSON, doc["set"]["onnx_nodes"])  # {file: nodes}, as CenterPoint's fix writes it
        files = {p.name: sha256(p) for p in sorted(tmp.iterdir())}
        write_json(tmp / FIX_JSON, {**doc, "files": files})

    write_dir_atomically(out, write)
    return out


def readme(doc: dict) -> str:
    """How to deploy the file and check it again."""
    kind, file = doc["kind"], doc["model"]["file"]
    s, v = doc["set"], doc.get("verification") or {}
    nodes = s.get("keep_fp32") if kind == "fp16" else s.get("nodes_to_exclude")
    what = ("kept in FP32 through explicit Casts" if kind == "fp16"
            else f"left out of {kind.upper()} (no quantization around them: float32)")
    engine = file.replace(".onnx", ".engine")
    lines = [f"# cp_debug fix: {doc['model'].get('torch') or doc['model'].get('onnx')}, {kind.upper()} "
             f"({doc['backends']['candidate']})", "",
             f"Written by cp_debug {doc['cp_debug_version']} on {doc['written_at']}. `{file}` is "
             f"{'FP16' if kind == 'fp16' else 'INT8 Q/DQ'} with {len(nodes)} node(s) {what}; the set was searched "
             f"on {len(doc['search_frames']['search'])} sample(s) to keep {doc['target_text']}, and the file was "
             f"verified in ONNX Runtime ({v.get('device')}) on {len(v.get('samples') or ())} sample(s)"
             f"{' the search never saw' if doc.get('held_out_verification') else ' (the search sample itself)'}: "
             f"**{'holds' if v.get('holds') else 'does NOT hold'}**.", ""]
    lines += [f"Note: {n}." for n in doc.get("notes") or ()] + ([""] if doc.get("notes") else [])  # converts none
    m = (doc.get("metric") or {}).get("held_out")
    if m:
        changed = ", ".join(m["changed_before"]) or "none"
        lines += [f"Task metric `{m['name']}` on the held-out samples: {_f(m['before'])} before (the plain candidate; "
                  f"changed: {changed}), {_f(m['after'])} after (this file; changed: "
                  f"{', '.join(m['changed_after']) or 'none'}); the reference's {_f(m['reference'])}.", ""]
    if nodes:
        lines += ["| node | op | module |", "|---|---|---|"]
        lines += [f"| `{n['name']}` | {n['op_type']} | {n['module'] or '-'} |" for n in s["nodes"]]
        lines.append("")
    lines += ["| sample | before: worst rel. RMSE | after: worst rel. RMSE | after |", "|---|---|---|---|"]
    for x in v.get("samples") or ():
        b, a = x.get("before") or {}, x["after"]
        lines.append(f"| {x['sample']} | {_f(b.get('worst_rel_rmse'))} | {_f(a['worst_rel_rmse'])} | "
                     f"{'pass' if a['passed'] else 'fail'} |")
    lines += ["", f"Files: `{file}` (deploy this), `{REFERENCE_FILE}` (the FP32 graph it was judged against), "
              f"`{VERIFY_PREFIX}*.npz` (the held-out inputs, keyed by input name), `nodes_to_exclude.json` (the nodes "
              "by file: ModelOpt's `nodes_to_exclude` (AutoCast's for FP16), ONNX Runtime's quantizer's), `fix.json` "
              "(every step, figure and version).", "", "## Deploy", "",
              "TensorRT (the precision is in the graph: build it strongly typed):",
              "```", f"trtexec --onnx={file} --stronglyTyped --saveEngine={engine}",
              f"polygraphy convert {file} --strongly-typed -o {engine}", "```", "", "ONNX Runtime:", "```python",
              "import onnxruntime as ort",
              f"sess = ort.InferenceSession('{file}', providers=['CUDAExecutionProvider', 'CPUExecutionProvider'])",
              "outputs = sess.run(None, feed)  # feed: {input name: array}", "```"]
    if kind == "int8":
        lines += ["", "To quantize again with the same nodes left out: ONNX Runtime "
                  f"`{s['onnxruntime']['call']}`; ModelOpt `{s['modelopt']['command']}`."]
    elif (s.get("modelopt") or {}).get("command"):
        lines += ["", f"To quantize again with the same nodes left out: ModelOpt `{s['modelopt']['command']}`."]
    lines += ["", "## Check it again", "", "```", "cpdebug fix --check .   # re-runs the verification on the "
              f"{VERIFY_PREFIX}*.npz samples; exit 0 holds, 5 does not", "```", ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class GraphCheck(CheckedFix):
    """`fix --check DIR` of a generic fix (its `verification`: `GraphVerification`), with the recorded --metric on
    the held-out samples computed again here."""

    metric: "MetricFigures | None" = None
    shape_range: dict | None = None  # the declared range its fix verified at (fix.json's `shape_range`)

    @property
    def holds(self) -> bool:
        """Within the budget here, and the recorded --metric's decision unchanged on every held-out sample, as the
        fix judged it (`module.GraphFix.holds`): before, a fix that did not hold at its --metric (BeatNet's INT8, a
        beat's kind changed on a held-out sample) was said to hold here, exit 0."""
        return self.verification.holds and not (self.metric is not None and self.metric.changed_after)

    @property
    def metric_changed(self) -> bool:
        return self.metric is not None and bool(self.metric.changed_after)

    def to_json(self) -> dict:
        return {**super().to_json(), "metric": metric_json((self.metric,) if self.metric is not None else ()),
                "shape_range": self.shape_range}


def check_graph_fix(root: Path, doc: dict, *, device: str | None = None, progress=None) -> GraphCheck:
    """Run the written file on the written held-out samples against the written FP32 graph, as the fix did."""
    from cp_debug.bisect.cures.experiment import progress_step
    from cp_debug.fix.artifact import sha256
    from cp_debug.fix.toolchain import Change, toolchain, version_changes
    from cp_debug.fix.graph_verification import held_by_sample
    from cp_debug.fix.module import reference_values, verify_file
    from cp_debug.samples.sets import graph_inputs, read_saved
    from cp_debug.graph.model import load_onnx

    model, rec = doc["model"], doc.get("verification") or {}
    kind = doc["kind"]
    if kind not in FILES or model.get("file") != FILES[kind]:
        raise BadInputError(f"{root}/fix.json: model file {model.get('file')!r} is not a {kind} fix's")
    for name in (model["file"], REFERENCE_FILE):
        if not (root / name).is_file():
            raise BadInputError(f"{root} lacks {name}: write the fix again (`cpdebug fix --out DIR`)")
    ref, fixed = load_onnx(root / REFERENCE_FILE), load_onnx(root / model["file"])
    names = [x["sample"] for x in rec.get("samples") or ()]
    paths = [root / f"{VERIFY_PREFIX}{n}.npz" for n in names]
    missing = [p.name for p in paths if not p.is_file()]
    if not paths or missing:
        raise BadInputError(f"{root} lacks the samples it was verified on ({', '.join(missing) or 'none recorded'})")
    if device not in (None, "cpu", "cuda"):
        raise BadInputError(f"--device must be cpu or cuda, not {device!r}")
    device = device or rec.get("device") or "cpu"
    if device == "cuda":
        from cp_debug.backends.factory import check_available

        check_available(BackendSpec.parse(f"ort-cuda-{'int8' if kind == 'int8' else 'fp32'}"))
    samples = read_saved(dict(zip(names, paths)), graph_inputs(ref, REFERENCE_FILE))
    shape_range = doc.get("shape_range")
    unverified = [f"{k} {v}" for k, v in ((shape_range or {}).get("verified_at") or {}).items()
                  if v not in {s.shape for s in samples}]
    if unverified:
        raise BadInputError(f"{root} holds no sample at the range's {', '.join(unverified)}, which its fix.json "
                            "says it was verified at: write the fix again (`cpdebug fix --out DIR`)")
    recorded_metric = (doc.get("metric") or {}).get("held_out")
    metric = _task_metric(recorded_metric["name"]) if recorded_metric else None
    with progress_step(progress, f"running {model['file']} on {len(samples)} sample(s), {device}"):
        expected = reference_values(ref, samples)
        got: list | None = [] if metric is not None else None
        after = verify_file(kind, device, ref, fixed, samples, expected, got,  # held as the fix held it
                            held_by_sample([x.get("before") for x in rec.get("samples") or ()]))
    from cp_debug.compare.diff import Tolerance

    t = rec.get("tolerance") or {}
    ver = GraphVerification(device, kind, Tolerance(t.get("atol"), t.get("rtol"), t.get("max_share")), after,
                            held_out=bool(rec.get("held_out", True)), shapes={s.name: s.shape for s in samples})
    recorded = {x["sample"]: _num(x["after"]["worst_rel_rmse"]) for x in rec.get("samples") or ()}
    changed = tuple(Change(f"{f.sample}.worst_rel_rmse", recorded.get(f.sample), f.worst_rel_rmse) for f in after
                    if not _same(recorded.get(f.sample), f.worst_rel_rmse))
    scored = None
    if metric is not None:
        from cp_debug.fix.metric import outputs_of, score

        scored = score(metric, "held_out", samples, outputs_of(expected, [o.name for o in ref.graph.output]), got,
                       after)
        if not _same(_num(recorded_metric.get("after")), scored.after):
            changed += (Change(f"{metric.name}.after", recorded_metric.get("after"), scored.after),)
    modified = tuple(n for n, digest in (doc.get("files") or {}).items()
                     if not (root / n).is_file() or sha256(root / n) != digest)
    return GraphCheck(root, rec.get("holds"), ver, version_changes(doc.get("environment") or {}, toolchain()),
                      changed, modified, scored, shape_range)


def _task_metric(name: str):
    from cp_debug.samples.tasks import task_metric

    return task_metric(name)


def _num(x):
    return float(x) if isinstance(x, str) and x in ("nan", "inf", "-inf") else x


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or (a != a and b != b) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)


def _f(x) -> str:
    return "-" if x is None else f"{x:.3g}"
