"""One `cpdebug fix` run: the request (where the user starts from), the search, the verification, the document.

From scratch (preset / checkpoint / backends / frames), from a bisect report (its model, its candidate, its
root-cause path ranked first) or, for INT8, from a PTQ dir or checkpoint. FP16 candidates (`ort-*-fp16`) search
nodes to keep in FP32; INT8 candidates (`ort-*-int8`) layers to leave out of INT8. Nothing is written here: the
typed `FixOutcome` (outcome.py) is written by its `write(DIR)` through `artifact.write_fix`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.subjects.model_facts import RecipeFacts
from cp_debug.errors import BadInputError
from cp_debug.fix.outcome import FixOutcome
from cp_debug.fix.request import FixRequest, check_request, fixable, make_request
from cp_debug.lidar.record import ModelRecord

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.recipe_contract.recipe import Recipe


def run_fix(req: FixRequest, progress=None) -> FixOutcome:
    """Search, verify (where a set was found) and gather the versions: the typed outcome (nothing written). The
    request's recipe runs it (its `fix` plug-in's `run_fix`, recipe_contract/recipe.py), after the checks every fix
    makes."""
    check_request(req)
    return req.recipe.plugin("fix").run_fix(req, progress)


def request_from_bisect(report_path: str | Path, starts: Sequence["Recipe"], **overrides) -> FixRequest:
    """A FixRequest from a `cpdebug bisect --json` report: its model (the report's ModelRecord), reference, first
    ONNX Runtime FP16/INT8 candidate, and the root-cause path ranked first; `overrides` (not None) replace what it
    says. `starts`: the recipes whose bisect reports start a fix (`Recipe.fix_from_reports`)."""
    from cp_debug.report.io import load_report

    p = Path(report_path)
    report = load_report(p)  # the one reader of a saved report: a damaged or foreign file is one line
    facts = report.facts
    if not (isinstance(facts, RecipeFacts) and facts.recipe in {r.name for r in starts}):
        kind = facts.kind if facts is not None else "another model"
        raise BadInputError(f"{p} is a bisect of {kind}; fix works on the "
                            f"{' or '.join(r.title for r in starts)} recipe (run `cpdebug bisect --json` on it)")
    usable = [c for c in report.candidates if _fixable(c.spec)]
    if not usable:
        raise BadInputError(f"{p} has no ONNX Runtime FP16/INT8 candidate "
                            f"({', '.join(c.label for c in report.candidates)})"
                            "; give --backends REF,CAND")
    cand = usable[0]
    first = tuple(x for x in ([cand.root_cause.probe] if cand.root_cause else []) + list(cand.path or []) if x)
    base = {"candidate": cand.spec, "reference": report.reference, "first_modules": tuple(dict.fromkeys(first)),
            "source": {"from": "bisect", "report": str(p), "candidate": cand.label,
                       "root_cause": cand.root_cause.probe if cand.root_cause else None}}
    return make_request(report.model or _described_model(facts), base, overrides)


def _described_model(m: RecipeFacts) -> ModelRecord:
    """The model of a bisect report written before `model_record`, from its facts' recipe fields."""
    return ModelRecord.of(m.preset or "demo", checkpoint=m.checkpoint, seed=m.seed or 0,
                          random_weights=bool(m.random_weights), int8=(m.int8 or {}).get("source") or None)


def any_model_sweep(sweep_dir: str | Path) -> dict | None:
    """What `fix --from-sweep` takes from a sweep of any model (`cpdebug sweep --torch / --onnx --inputs DIR`: its
    sweep.json's kind "samples"): the model option, the samples folder and `REF,CAND` (its first candidate fix
    searches), as `fix --torch / --onnx` takes them; None for a CenterPoint sweep (`request_from_sweep`). Paths
    written relative are read from here, else beside the sweep's folder."""
    import json

    p = Path(sweep_dir)
    path = p / "sweep.json" if p.is_dir() else p
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # request_from_sweep says what is wrong with it
    if not isinstance(doc, dict) or doc.get("kind") != "samples":
        return None
    usable = [c for c in doc.get("candidates") or [] if _any_model_candidate(c)]
    if not usable:
        raise BadInputError(f"{path} has no candidate fix searches ({', '.join(doc.get('candidates') or [])}): "
                            "give --torch / --onnx with --backends")

    def found(text: str | None) -> str | None:  # FILE.py:FUNC keeps its :FUNC
        if not text:
            return None
        head, sep, func = str(text).rpartition(":")
        file, tail = (head, f":{func}") if sep and head.endswith(".py") else (str(text), "")
        there = Path(file) if Path(file).exists() else path.parent.parent / file
        return f"{there}{tail}"

    model = doc.get("model") or {}
    return {"torch": found(model.get("torch")), "onnx": found(model.get("onnx")), "inputs": found(doc.get("samples")),
            "backends": f"{doc.get('reference') or 'ort'},{usable[0]}"}


def _any_model_candidate(spec: str) -> bool:
    from cp_debug.fix.module import CANDIDATES

    try:
        return str(BackendSpec.parse(spec)) in CANDIDATES
    except BadInputError:
        return False


def request_from_sweep(sweep_dir: str | Path, **overrides) -> FixRequest:
    """A FixRequest from a `cpdebug sweep --out DIR`: its model, reference, first ONNX Runtime FP16/INT8 candidate,
    its held-out frames (the search's whole set unless --scenes says fewer) judged worst first in the sweep's rank
    order, and the layers it blamed (root causes by count, then layer-local faults) ranked first; `overrides` (not
    None) replace what it says."""
    import json

    from cp_debug.data.scenes import HELDOUT_SEED_BASE, heldout_seed

    p = Path(sweep_dir)
    path = p / "sweep.json" if p.is_dir() else p
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise BadInputError(f"cannot read the sweep {path}: {err} (give the folder of `cpdebug sweep --out DIR`)") \
            from None
    from cp_debug.sweep.report import READS

    if not isinstance(doc, dict) or doc.get("schema") not in READS:
        raise BadInputError(f"{path} is not a sweep.json (schema {' or '.join(READS)})")
    usable = [c for c in doc.get("candidates") or [] if _fixable(c)]
    if not usable:
        raise BadInputError(f"{path} has no ONNX Runtime FP16/INT8 candidate ({', '.join(doc.get('candidates') or [])})"
                            "; give --backends REF,CAND")
    cand = usable[0]
    settings = doc.get("settings") or {}
    ranked = [f for f in doc.get("frames") or [] if f.get("status") != "failed"]
    seeds = [heldout_seed(f.get("token")) for f in ranked]
    if not seeds or None in seeds:
        raise BadInputError(f"{path} ran on {settings.get('scenes') or 'other frames'}; fix judges on held-out "
                            "synthetic frames: start from scratch (--backends, --n N) or from a bisect report")
    lo = min(seeds)
    local = [f["candidates"][cand]["local_probe"] for f in ranked
             if (f.get("candidates") or {}).get(cand, {}).get("class") == "local"]
    counts = (doc.get("root_cause_counts") or {}).get("counts") or {}
    blamed = sorted(counts, key=lambda k: -counts[k]) + [x for x in local if x]
    model = (ModelRecord.from_json(doc["model_record"]) if doc.get("model_record") else  # older sweeps: settings
             ModelRecord.of(settings.get("preset") or "demo", checkpoint=settings.get("checkpoint"),
                            random_weights=bool(settings.get("random_weights")), seed=settings.get("seed") or 0,
                            int8=settings.get("int8_dir")))
    if BackendSpec.parse(cand).precision != "int8":
        model = replace(model, int8=None)
    base = {"candidate": cand, "reference": doc.get("reference") or "torch",
            "first_scene": lo - HELDOUT_SEED_BASE, "scenes": max(seeds) - lo + 1,
            "frame_order": tuple(s - lo for s in seeds), "first_modules": tuple(dict.fromkeys(blamed)),
            "source": {"from": "sweep", "sweep": str(path), "candidate": cand, "frames": len(seeds),
                       "root_causes": counts, "layer_local": sorted(set(x for x in local if x))}}
    return make_request(model, base, overrides)


def _fixable(spec: str) -> bool:
    try:
        s = BackendSpec.parse(spec)
    except BadInputError:
        return False
    return fixable(s)
