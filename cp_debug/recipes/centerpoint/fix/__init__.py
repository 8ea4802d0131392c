"""CenterPoint's part of `cpdebug fix` (its `fix` plug-in, recipe_contract/recipe.PLUGINS): the pair (voxel encoder,
backbone/neck/head) searched in FP16 (nodes kept in FP32, of our export or of the user's deployed pair `SPEC@DIR`)
or INT8 (layers left out), verified by mAP/NDS and each frame's boxes (its `verify.py`), and `fix --check` of a
folder it wrote.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from cp_debug.errors import BadInputError
from cp_debug.fix.check import FIGURES
from cp_debug.fix.figures import progress_step
from cp_debug.fix.outcome import FixOutcome, FixSet

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.fix.request import FixRequest

CHECK_FIGURES = FIGURES  # what `fix --check` compares of the recorded verification


def needs_devkit(req: "FixRequest") -> bool:
    """Whether the verification scores mAP with nuscenes-devkit (its `verify.py`): always, checked before the
    search, never after it."""
    return True


def check_request(req: "FixRequest") -> None:
    """Nothing of CenterPoint's own beyond the checks every fix makes (`fix.request.check_request`)."""


def run_fix(req: "FixRequest", progress=None) -> FixOutcome:
    """Search, verify (where a set was found) and gather the versions: the typed outcome (nothing written)."""
    from cp_debug.fix.request import request_frames
    from cp_debug.fix.toolchain import stamp
    from cp_debug.models.centerpoint.presets import get_preset

    cfg = get_preset(req.model.model_name)
    frames, vframes = request_frames(req, cfg)
    order = frame_order(req.frame_order, len(frames))
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
        from cp_debug.recipes.centerpoint.fix.verify import verify_pair

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
    env, version, now = stamp(progress)
    sensitivity = None
    if req.kind == "int8" and found.sensitivity is not None:
        sensitivity = tuple(found.sensitivity.rows)
    return FixOutcome(req, req.model.model_name, weights, frames, kept, search, verification, env, version, now,
                      sensitivity, fixed, models["fp32"], excl, tuple(skip),
                      pair.to_json() if pair is not None else None)


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


def deployed_pair(req: "FixRequest", cfg) -> DeployedPair:
    """Read, check and map the candidate's deployed pair (`req.spec.onnx_dir`) against the request's model, as a
    bisect with `SPEC@DIR` does (`bisect.subjects.deployed.deployed_stages`); BadInputError where the files are not an
    FP32
    pair the fix can name node by node."""
    from collections import Counter

    from cp_debug.bisect.subjects.deployed import deployed_stages
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


def _models(req: "FixRequest", cfg, progress):
    """(fake-quant model or None, FP32 model, weights text, layers skipped by the PTQ plan)."""
    m = req.model
    if m.int8 is not None:
        import copy

        from cp_debug.recipes.centerpoint.int8_source import load_int8_model

        if m.checkpoint is not None or m.random_weights:
            raise BadInputError("--int8 brings its own (BN-fused) weights: drop --checkpoint / --random-weights")
        loaded = load_int8_model(m.int8, cfg)
        return loaded.model, copy.deepcopy(loaded.model), loaded.weights, ()
    from cp_debug.models.centerpoint.source import load_model

    lm = load_model(m.model_name, m.checkpoint, m.seed, random_weights=m.random_weights)
    if req.kind == "fp16":
        return None, lm.model, lm.weights, ()
    from cp_debug.recipes.centerpoint.ptq.quantize import quantize_centerpoint
    from cp_debug.data.frames import calibration, points_of

    frames = calibration(cfg, req.calib_n)
    n = len(frames)
    run = quantize_centerpoint(lm.model, cfg, points_of(frames, cfg), n, method=req.method, percentile=req.percentile)
    return run.model, run.fused_fp32, f"{lm.weights}, PTQ {req.method} on {n} calibration scene(s)", \
        tuple(name for name, _ in run.plan.skipped)


def frame_order(order: Sequence[int] | None, n: int) -> tuple[int, ...] | None:
    """A given frame order (worst first) cut to the n frames judged, every frame present once; None when not given."""
    if order is None:
        return None
    kept = [i for i in dict.fromkeys(order) if 0 <= i < n]
    return tuple(kept + [i for i in range(n) if i not in set(kept)])


def _fp16(req, cfg, fp32: dict, frames, module_names, progress, order=None, modules=None):
    from cp_debug.recipes.centerpoint.fix.fp16 import find_fp16_fix

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
    from cp_debug.recipes.centerpoint.fix.int8 import export_pairs, find_int8_fix
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


def check_fix(root: Path, doc: dict, *, device: str | None = None, progress=None):
    """(the recorded verification run again on the pair as written against its FP32 pair, the figures `fix --check`
    compares)."""
    from cp_debug.data.frames import frame_set_from_json
    from cp_debug.fix.artifact import recorded_model_name, reference_name
    from cp_debug.recipes.centerpoint.fix.judge import check_onnx_pair
    from cp_debug.fix.targets import FixTarget
    from cp_debug.recipes.centerpoint.fix.verify import verify_pair
    from cp_debug.models.centerpoint.presets import get_preset

    rec = doc["verification"]
    fixed = check_onnx_pair(root, (doc.get("pair") or {}).get("files"))
    reference = tuple(root / reference_name(p.name) for p in fixed)
    missing = [p.name for p in reference if not p.is_file()]
    if missing:
        raise BadInputError(f"{root} lacks {', '.join(missing)} (the FP32 pair the fix is checked against)")
    cfg = get_preset(recorded_model_name(doc))
    frames = frame_set_from_json(rec["frames"], cfg)
    ver = verify_pair(cfg, frames, FixTarget.from_json(doc["target"]), reference, fixed,
                      precision=rec.get("precision") or doc.get("kind") or "fp16",
                      device=device or rec.get("device", "cpu"), bootstrap=0, progress=progress)
    return ver, CHECK_FIGURES
