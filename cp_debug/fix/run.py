"""One `cpdebug fix` run: the request (where the user starts from), the search, the verification, the document.

From scratch (preset / checkpoint / backends / frames), from a bisect report (its model, its candidate, its
root-cause path ranked first) or, for INT8, from a PTQ dir or checkpoint. FP16 candidates (`ort-*-fp16`) search
nodes to keep in FP32; INT8 candidates (`ort-*-int8`) layers to leave out of INT8. Nothing is written here: the
typed `FixOutcome` (outcome.py) is written by its `write(DIR)` through `artifact.write_fix`.
"""

from __future__ import annotations

import datetime
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.model_facts import RecipeFacts
from cp_debug.errors import BadInputError
from cp_debug.fix.outcome import FixOutcome, FixSet
from cp_debug.fix.request import FixRequest, check_request, fixable, make_request
from cp_debug.models.centerpoint.source import ModelRecord

def run_fix(req: FixRequest, progress=None) -> FixOutcome:
    """Search, verify (where a set was found) and gather the versions: the typed outcome (nothing written)."""
    from cp_debug.fix.figures import progress_step
    from cp_debug.models.centerpoint.presets import get_preset

    check_request(req)
    if req.recipe == "transfusion":
        return _transfusion(req, progress)
    cfg = get_preset(req.model.model_name)
    frames, vframes = _frames(req, cfg)
    order = _frame_order(req.frame_order, len(frames))
    pair = None
    with tempfile.TemporaryDirectory(prefix="cpdebug_fix_") as tmp:
        if req.spec.onnx_dir is not None:  # the user's own FP32 pair, its probes mapped as bisect maps them
            with progress_step(progress, f"reading the deployed pair in {req.spec.onnx_dir}"):
                pair = deployed_pair(req, cfg)
            weights = pair.weights
            found, models, kept, excl, skip = _fp16(req, cfg, pair.models, frames, pair.module_names, progress,
                                                    order, pair.node_modules)
        else:
            with progress_step(progress, "loading the model"):
                qmodel, model, weights, skipped = _models(req, cfg, progress)
            module_names = {n for n, _ in model.named_modules()}
            sample = frames.frames[0].load(cfg).points
            if req.kind == "fp16":
                from cp_debug.recipes.centerpoint.export import export_onnx

                import onnx

                res = export_onnx(model, cfg, tmp, sample_points=sample)
                fp32 = {p.name: onnx.load(str(p)) for p in (res.voxel_encoder, res.backbone)}
                found, models, kept, excl, skip = _fp16(req, cfg, fp32, frames, module_names, progress, order)
            else:
                found, models, kept, excl, skip = _int8(req, cfg, qmodel, model, frames, module_names, sample, tmp,
                                                        progress, skipped, order)
    search = found.search
    fixed = models.get("fixed")
    verification = None
    if fixed is not None:
        from cp_debug.fix.artifact import kept_fp32_violations
        from cp_debug.fix.verify import verify_pair

        if req.kind == "fp16":
            for file, nodes in excl.items():
                bad = kept_fp32_violations(fixed[file], nodes)
                if bad:  # convert_to_fp16 broke its promise: an internal error, not the user's
                    raise RuntimeError(f"{file}: kept nodes do not compute in float32: {bad}")
        files = list(fixed)
        verification = verify_pair(cfg, vframes, req.target, [models["fp32"][f] for f in files],
                                   [fixed[f] for f in files], [models["plain"][f] for f in files],
                                   precision=req.kind, device=req.spec.device, bootstrap=req.bootstrap,
                                   progress=progress, runs=found.runs if req.kind == "fp16" else None)
    env, version, now = _stamp(progress)
    sensitivity = None
    if req.kind == "int8" and found.sensitivity is not None:
        sensitivity = tuple(found.sensitivity.rows)
    return FixOutcome(req, req.model.model_name, weights, frames, kept, search, verification, env, version, now,
                      sensitivity, fixed, models["fp32"], excl, tuple(skip),
                      pair.to_json() if pair is not None else None)


def _stamp(progress) -> tuple[dict, str, str]:
    """(the toolchain's versions, cp_debug's, now in ISO 8601 UTC)."""
    from cp_debug.fix.check import toolchain
    from cp_debug.fix.figures import progress_step

    import cp_debug

    with progress_step(progress, "versions"):
        env = toolchain()
    return env, cp_debug.__version__, datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _transfusion(req: FixRequest, progress) -> FixOutcome:
    """The FP16 fix of TransFusion-L's one graph (`fix/transfusion.py`) as a FixOutcome."""
    from cp_debug.fix.figures import progress_step
    from cp_debug.fix.names import per_file
    from cp_debug.fix.transfusion import JUDGED_AGAINST, transfusion_fix
    from cp_debug.models.transfusion.presets import get_preset
    from cp_debug.recipes.transfusion.export import ONNX_FILE
    from cp_debug.recipes.transfusion.source import load_transfusion

    m = req.model
    cfg = get_preset(m.model_name)
    frames, vframes = _frames(req, cfg)
    with progress_step(progress, "loading the model"):
        loaded = load_transfusion(m.model_name, m.checkpoint, m.seed, m.random_weights)
    fx = transfusion_fix(req, loaded.model.eval(), cfg, frames, vframes, progress)
    nodes = per_file(fx.search.keep or (), [ONNX_FILE])
    modules = sorted({v for v in fx.modules.values() if v})
    kept = FixSet("fp16", tuple(modules), nodes, keep_fp32=tuple(fx.search.keep or ()), node_modules=fx.modules)
    env, version, now = _stamp(progress)
    return FixOutcome(req, m.model_name, loaded.weights, frames, kept, fx.search, fx.verification, env, version, now,
                      None, fx.fixed, fx.reference, nodes, tuple(modules), recipe="transfusion",
                      judged_against=JUDGED_AGAINST)


def _frames(req: FixRequest, cfg):
    """(the search's frames, the verification's). Held-out synthetic frames: `--n N` from `--first-scene`,
    verified on them or on `--verify-n` frames after them. The user's scenes (an info file): every frame from
    `--first-scene`; the last `--verify-n` (default: half) are verified and never seen by the search."""
    from cp_debug.data.frames import HeldOutSet, ScenesSet

    if req.scenes_path is None:
        frames = HeldOutSet.load(cfg, req.scenes, req.first_scene)
        if not req.verify_scenes:
            return frames, frames
        return frames, HeldOutSet.load(cfg, req.verify_scenes, req.first_scene + req.scenes)
    every = ScenesSet.load(cfg, req.scenes_path, req.first_scene, data_root=req.data_root)
    n_verify = len(every) // 2 if req.verify_scenes is None else req.verify_scenes
    if n_verify == 0:
        return every, every
    if n_verify >= len(every):
        raise BadInputError(f"--scenes {req.scenes_path} has {len(every)} frame(s) from frame {req.first_scene} on: "
                            f"too few to verify on {n_verify} the search does not see (give more frames, or "
                            "--verify-n 0 to verify on the search's own)")
    return every.split(n_verify)


@dataclass(frozen=True)
class DeployedPair:
    """The user's FP32 pair (`SPEC@DIR`) as the fix takes it: {file name: ModelProto} in stage order, each node's
    module by the probe mapping bisect makes (FILE:NODE -> module or None), the model's module names, the
    weights the mapping's reference model has, and what mapping found (notes)."""

    folder: Path
    models: dict
    node_modules: dict
    module_names: set
    weights: str
    notes: tuple[str, ...]

    def to_json(self) -> dict:
        return {"from": "deployed", "dir": str(self.folder), "files": list(self.models), "notes": list(self.notes)}


def deployed_pair(req: FixRequest, cfg) -> DeployedPair:
    """Read, check and map the candidate's deployed pair (`req.spec.onnx_dir`) against the request's model, as a
    bisect with `SPEC@DIR` does (`bisect.deployed.deployed_stages`); BadInputError where the files are not an FP32
    pair the fix can name node by node."""
    from collections import Counter

    from cp_debug.bisect.deployed import deployed_stages
    from cp_debug.fix.names import mapped_node_modules
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    m, spec = req.model, req.spec
    subject = centerpoint_subject(cfg, checkpoint=m.checkpoint, seed=m.seed, random_weights=m.random_weights)
    found = deployed_stages(spec, subject, {i: list(st.probe_map().tensors) for i, st in enumerate(subject.stages)})
    if found.precision != "fp32":
        raise BadInputError(f"{spec}: the files hold {found.precision} already; fix converts an FP32 pair to FP16 "
                            "with nodes kept in FP32: give the folder of your FP32 export")
    models = {path.name: st.onnx() for path, st in zip(found.files, found.stages)}
    for file, model in models.items():
        counts = Counter(n.name for n in model.graph.node if n.op_type != "Constant")
        bad = [n or "(unnamed)" for n, k in counts.items() if k > 1 or not n]
        if bad:
            raise BadInputError(f"{spec}: {file} has nodes without a name of their own ({', '.join(bad[:3])}); the "
                                "fix names the nodes it keeps in FP32 (FILE:NODE): name every node, e.g. with "
                                "onnx-graphsurgeon")
    return DeployedPair(spec.onnx_dir, models, mapped_node_modules(models, [st.probe_map() for st in found.stages]),
                        {n for st in subject.stages for n in st.trace().order}, subject.facts.weights,
                        found.notes)


def _models(req: FixRequest, cfg, progress):
    """(fake-quant model or None, FP32 model, weights text, layers skipped by the PTQ plan)."""
    m = req.model
    if m.int8 is not None:
        import copy

        from cp_debug.recipes.centerpoint.int8_source import load_int8_model

        if m.checkpoint is not None or m.random_weights:
            raise BadInputError("--int8 brings its own (BN-fused) weights: drop --checkpoint / --random-weights")
        loaded = load_int8_model(m.int8, cfg)
        return loaded.model, copy.deepcopy(loaded.model), loaded.weights, ()
    lm = m.load()
    if req.kind == "fp16":
        return None, lm.model, lm.weights, ()
    from cp_debug.ptq.quantize import quantize_centerpoint
    from cp_debug.data.frames import calibration, points_of

    frames = calibration(cfg, req.calib_n)
    n = len(frames)
    run = quantize_centerpoint(lm.model, cfg, points_of(frames, cfg), n, method=req.method, percentile=req.percentile)
    return run.model, run.fused_fp32, f"{lm.weights}, PTQ {req.method} on {n} calibration scene(s)", \
        tuple(name for name, _ in run.plan.skipped)


def _frame_order(order: Sequence[int] | None, n: int) -> tuple[int, ...] | None:
    """A given frame order (worst first) cut to the n frames judged, every frame present once; None when not given."""
    if order is None:
        return None
    kept = [i for i in dict.fromkeys(order) if 0 <= i < n]
    return tuple(kept + [i for i in range(n) if i not in set(kept)])


def _fp16(req, cfg, fp32: dict, frames, module_names, progress, order=None, modules=None):
    from cp_debug.fix.fp16 import find_fp16_fix

    fx = find_fp16_fix(cfg, fp32, frames, req.target, device=req.spec.device, worst=req.worst,
                       first=req.first_modules, candidates=req.candidates, module_names=module_names,
                       modules=modules, frame_order=order, progress=progress)
    from cp_debug.fix.names import per_file

    keep = fx.search.keep or ()
    nodes = per_file(keep, list(fp32))
    kept_modules = sorted({m for m in fx.modules.values() if m})
    kept = FixSet("fp16", tuple(kept_modules), nodes, keep_fp32=tuple(keep), node_modules=fx.modules)
    return fx, {"fp32": fp32, "plain": fx.plain, "fixed": fx.fixed}, kept, nodes, kept_modules


def _int8(req, cfg, qmodel, fp32_model, frames, module_names, sample, tmp, progress, skipped: Sequence[str],
          order=None):
    from cp_debug.fix.figures import progress_step
    from cp_debug.fix.int8 import export_pairs, find_int8_fix
    from cp_debug.fix.names import layer_nodes

    fx = find_int8_fix(cfg, qmodel, fp32_model, frames, req.target, worst=req.worst, first=req.first_modules,
                       candidates=req.candidates, frame_order=order, progress=progress)
    keep = fx.search.keep
    if keep is None:
        return fx, {"fp32": {}, "plain": {}, "fixed": None}, FixSet("int8", None), {}, ()
    quantized = [n for n in fx.layers if n not in set(keep)]
    with progress_step(progress, "exporting the FP32, all-INT8 and fixed Q/DQ pairs"):
        models = export_pairs(cfg, qmodel, fp32_model, quantized, tmp, sample_points=sample)
    nodes = layer_nodes(models["fixed"], keep, module_names)
    kept = FixSet("int8", tuple(keep), nodes, quantized=tuple(quantized), skipped_by_plan=tuple(skipped))
    return fx, models, kept, nodes, tuple(sorted(set(skipped) | set(keep)))


def request_from_bisect(report_path: str | Path, **overrides) -> FixRequest:
    """A FixRequest from a `cpdebug bisect --json` report: its model (the report's ModelRecord), reference, first
    ONNX Runtime FP16/INT8 candidate, and the root-cause path ranked first; `overrides` (not None) replace what it
    says."""
    from cp_debug.report.io import load_report

    p = Path(report_path)
    report = load_report(p)  # the one reader of a saved report: a damaged or foreign file is one line
    facts = report.facts
    if not (isinstance(facts, RecipeFacts) and facts.recipe == "centerpoint"):
        kind = facts.kind if facts is not None else "another model"
        raise BadInputError(f"{p} is a bisect of {kind}; fix works on the CenterPoint recipe (run `cpdebug bisect "
                            "--json` on it)")
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
