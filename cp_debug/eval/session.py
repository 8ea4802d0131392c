"""One evaluation: scenes, weights, every backend over every scene, metrics, diffs and diagnoses.

Checks that can fail fast (backend specs and availability, the detections file's format and tokens) run
before the slow work (ONNX export, calibration, inference).
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, ContextManager

from cp_debug.backends.spec import BackendSpec, Capability
from cp_debug.determinism import Determinism
from cp_debug.errors import BadInputError
from cp_debug.eval.report import EvalReport
from cp_debug.recipes.catalog import DEFAULT

# progress(description, total) -> context manager yielding advance(n=1)
ProgressFactory = Callable[[str, int], ContextManager[Callable[..., None]]]


@contextlib.contextmanager
def _no_progress(description: str, total: int):
    yield lambda n=1, **fields: None


@dataclass(frozen=True)
class EvalOptions:
    backends: tuple[tuple[str, BackendSpec], ...]  # (label as typed, spec), the reference first
    preset: str = "demo"
    checkpoint: Path | None = None
    random_weights: bool = False
    seed: int = 0
    scenes_dir: Path | None = None
    data_root: Path | None = None  # what the info file's relative lidar paths are joined to (default: its folder)
    n: int = 50
    detections_file: Path | None = None
    deterministic: bool = True
    cudnn_algo: str | None = None  # Determinism.conv_algo
    calib_scenes: int = 4
    max_dist: float = 2.0
    int8_dir: Path | None = None  # a PTQ dir: int8 specs run its fake-quant model (torch) / Q/DQ files (ort)
    tolerance_mode: str = "model"  # "model": a verdict per candidate (verdict.py); "fixed": none, as before
    recipe: str = DEFAULT  # the built-in recipe of `preset` (recipes/catalog.py)


def load_weights(preset: str, checkpoint: Path | None, random_weights: bool, seed: int):
    """The model of `preset`: `checkpoint`, seeded random weights, or the package default (`load_model`'s)."""
    from cp_debug.lidar.record import ModelRecord

    if random_weights and checkpoint is not None:
        raise BadInputError("--random-weights and --checkpoint exclude each other; give one")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise BadInputError(f"--checkpoint {checkpoint} does not exist")
    from cp_debug.recipes.catalog import recipe

    return recipe().load_model(ModelRecord.of(preset, checkpoint=checkpoint, random_weights=random_weights, seed=seed))


def run_eval(opts: EvalOptions, progress: ProgressFactory = _no_progress,
             step: Callable[[str], ContextManager] | None = None) -> EvalReport:
    """Evaluate every backend of `opts` (and the detections file) on the scenes; the first backend is the reference."""
    from cp_debug.backends.factory import check_available
    from cp_debug.eval.detection_diff import diff_detections
    from cp_debug.eval.devkit import default_range, evaluate, order_scores
    from cp_debug.eval.diagnose import diagnose, with_map_change
    from cp_debug.eval.results_format import read_results
    from cp_debug.data.frames import from_infos, held_out, unique_tokens
    from cp_debug.eval.boxes import ground_truth
    from cp_debug.recipes.catalog import box_cut, preset_config, runs_frame_model

    step = step or (lambda text: contextlib.nullcontext())
    specs = dict(opts.backends)
    for spec in specs.values():
        check_available(spec)
    cfg = preset_config(opts.recipe, opts.preset)
    cut = box_cut(opts.recipe, cfg)
    if opts.detections_file is not None and not Path(opts.detections_file).is_file():
        raise BadInputError(f"--detections {opts.detections_file} does not exist")

    with step(f"reading scenes from {opts.scenes_dir}" if opts.scenes_dir else f"generating {opts.n} held-out scenes"):
        scenes = (unique_tokens(from_infos(opts.scenes_dir, cfg, opts.data_root, task="evaluate"), opts.scenes_dir)
                  if opts.scenes_dir else [f.in_memory(cfg) for f in held_out(opts.n)])
    tokens = [s.token for s in scenes]
    file_dets = absent = None
    if opts.detections_file is not None:
        file_dets, _meta, absent = read_results(opts.detections_file, cfg.class_names, tokens)
    if runs_frame_model(opts.recipe):
        detections, seconds, notes, weights = _run_staged(opts, specs, scenes, progress, step)
        calibrated = False
    else:
        with step("loading weights"):
            loaded = load_weights(opts.preset, opts.checkpoint, opts.random_weights, opts.seed)
        weights = loaded.weights
        detections, seconds, notes, calibrated = _run_backends(opts, specs, cfg, loaded, scenes, progress, step)

    labels = list(specs)
    if file_dets is not None:
        name = Path(opts.detections_file).name
        detections[name] = file_dets
        labels.append(name)
    gt = ground_truth(scenes, cfg)
    rng = default_range(cfg.point_cloud_range)
    ref = labels[0]
    diffs, diagnoses = {}, {}
    # Diagnoses first: they say what is wrong with a candidate whatever its metrics come to.
    for cand in labels[1:]:
        diffs[cand] = diff_detections(detections[ref], detections[cand], cfg.class_names, reference_name=ref,
                                      candidate_name=cand, max_dist=opts.max_dist)
        diagnoses[cand] = diagnose(detections[ref], detections[cand], diffs[cand],
                                   score_threshold=cut[0],
                                   absent=absent if cand not in specs and absent else (),
                                   voxel_size=cfg.voxel_size, out_size_factor=cfg.out_size_factor)
    metrics = {}
    with step("nuScenes metrics (nuscenes-devkit)"):
        for b in labels:
            ordered, why = order_scores(detections[b])
            if why:
                notes[b] = (*notes.get(b, ()), why)
            metrics[b] = evaluate(gt, ordered, cfg.class_names, class_range=rng)
    for cand in labels[1:]:
        diagnoses[cand] = with_map_change(diagnoses[cand], metrics[cand].mean_ap - metrics[ref].mean_ap)
    verdicts = _verdicts(opts, specs, labels, detections, diffs, metrics, cfg, cut)
    settings = {"scenes": str(opts.scenes_dir) if opts.scenes_dir else f"{len(scenes)} held-out synthetic scenes",
                "num_scenes": len(scenes), "deterministic": opts.deterministic, "seed": opts.seed,
                "calibration_scenes": opts.calib_scenes if calibrated else 0,
                **({"int8_dir": str(opts.int8_dir)} if opts.int8_dir is not None else {}),
                "match_distance_m": opts.max_dist,
                "class_range_m": rng, "score_threshold": cut[0], "glue_device": "cpu",
                "tolerance_mode": opts.tolerance_mode, "recipe": opts.recipe}
    report = EvalReport(preset=cfg.name, weights=weights, class_names=tuple(cfg.class_names), reference=ref,
                        backends=tuple(labels), metrics=metrics, diffs=diffs, diagnoses=diagnoses,
                        detections=detections, ground_truth=gt, seconds=seconds, notes=notes, settings=settings,
                        verdicts=verdicts)
    worst = report.worst_scene()
    if worst is not None:  # its points, for the BEV picture
        pts = next(s for s in scenes if s.token == worst[1]).load(cfg).points
        report = replace(report, worst_points=pts[:: max(1, len(pts) // 40000), :2].copy())
    return report


def _verdicts(opts: EvalOptions, specs: dict, labels: list, detections: dict, diffs: dict, metrics: dict,
              cfg, cut: tuple) -> dict:
    """Each candidate's verdict by the noise model (`verdict.judge_candidate`); none with --tolerance-mode fixed."""
    from cp_debug.eval.verdict import FILE_PRECISION, coarser, judge_candidate

    if opts.tolerance_mode != "model":
        return {}
    ref = labels[0]
    out = {}
    for cand in labels[1:]:
        precision = coarser(specs[ref].precision, specs[cand].precision if cand in specs else FILE_PRECISION)
        out[cand] = judge_candidate(cand, precision, detections[ref], detections[cand], diffs[cand], cfg,
                                    map_change=metrics[cand].mean_ap - metrics[ref].mean_ap,
                                    nds_change=metrics[cand].nds - metrics[ref].nds, cut=cut)
    return out


def _run_backends(opts: EvalOptions, specs: dict, cfg, loaded, scenes: list, progress: ProgressFactory,
                  step: Callable[[str], ContextManager]) -> tuple[dict, dict, dict, bool]:
    """Run every backend of `specs` on the scenes (ONNX exported and INT8 calibrated where one needs it): their
    detections, seconds and notes by label, and whether INT8 calibration feeds were made."""
    from cp_debug.data.frames import calibration, points_of
    from cp_debug.eval.backend_pipeline import BackendPipeline, int8_calibration, run_backend

    tokens = [s.token for s in scenes]
    det = Determinism(enabled=opts.deterministic, seed=opts.seed, conv_algo=opts.cudnn_algo)
    detections, seconds, notes = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="cpdebug-eval-") as tmp:
        onnx_dir = None
        if any(s.runs_onnx for s in specs.values()):
            from cp_debug.recipes.centerpoint.export import export_onnx

            with step("exporting the two ONNX stages"):
                onnx_dir = Path(tmp)
                export_onnx(loaded.model, cfg, onnx_dir, sample_points=scenes[0].load(cfg).points)
        calib = None
        if opts.int8_dir is not None:
            from cp_debug.quant.ptq_checkpoint import read_ptq_dir
            from cp_debug.recipes.catalog import recipe

            ptq = read_ptq_dir(opts.int8_dir, recipe(opts.recipe).graph_files)
            if ptq.preset != cfg.name:
                raise BadInputError(f"--int8 {opts.int8_dir} was quantized for preset {ptq.preset!r}: pass "
                                    f"--preset {ptq.preset}")
        if any(s.precision == "int8" and (opts.int8_dir is None or not s.can(Capability.PTQ_MODEL))
               for s in specs.values()):
            if opts.calib_scenes < 1:
                raise BadInputError("INT8 backends need --calib-n >= 1")
            with step(f"INT8 calibration feeds from {opts.calib_scenes} held-out scenes not evaluated"):
                frames = calibration(cfg, opts.calib_scenes, held_out_seeds=True, exclude=tokens)
                calib = int8_calibration(cfg, loaded.model, points_of(frames, cfg))
        for label, spec in specs.items():
            pipe = BackendPipeline(label, spec, cfg, loaded.model, onnx_dir=onnx_dir, determinism=det, calib=calib,
                                   int8_dir=opts.int8_dir if spec.can(Capability.PTQ_MODEL) else None)
            with step(f"{label}: building runners"):
                pipe.__enter__()
            try:
                with progress(label, len(scenes)) as advance:
                    run = run_backend(pipe, scenes, on_scene=lambda i: advance())
            finally:
                pipe.__exit__(None, None, None)
            detections[label], seconds[label], notes[label] = run.detections, run.seconds, run.notes
    return detections, seconds, notes, bool(calib)


def _run_staged(opts: EvalOptions, specs: dict, scenes: list, progress: ProgressFactory,
                step: Callable[[str], ContextManager]) -> tuple[dict, dict, dict, str]:
    """Every backend of `specs` on the scenes through the recipe's `FrameModel` (recipes/staged.py: each backend's
    stages end to end, its own decisions, the boxes its deployment makes): detections, seconds and notes by label, and
    the weights in words."""
    import time

    from cp_debug.eval.boxes import SampleBoxes
    from cp_debug.recipes.catalog import frame_model
    from cp_debug.recipes.staged import StagedPipeline

    if opts.int8_dir is not None:
        raise BadInputError(f"--int8 is CenterPoint's; not for --recipe {opts.recipe}")
    for label, spec in specs.items():
        if spec.precision == "int8" or spec.onnx_dir is not None:
            raise BadInputError(f"{label}: INT8 and deployed folders (SPEC@DIR) are not built for --recipe "
                                f"{opts.recipe}; use fp32 / fp16 backends")
    if opts.random_weights and opts.checkpoint is not None:
        raise BadInputError("--random-weights and --checkpoint exclude each other; give one")
    with step("loading weights, exporting the stages"):
        model = frame_model(opts.recipe, opts.preset, opts.checkpoint, opts.seed, opts.random_weights)
    det = Determinism(enabled=opts.deterministic, seed=opts.seed, conv_algo=opts.cudnn_algo)
    detections, seconds, notes = {}, {}, {}
    for label, spec in specs.items():
        with step(f"{label}: building runners"):
            pipe = StagedPipeline(model, spec, determinism=det).__enter__()
        try:
            t0, out = time.perf_counter(), {}
            with progress(label, len(scenes)) as advance:
                for frame in scenes:
                    out[frame.token] = SampleBoxes.from_detections(pipe.run(frame.load(model.cfg).points).detections)
                    advance()
        finally:
            pipe.__exit__(None, None, None)
        detections[label], seconds[label], notes[label] = out, time.perf_counter() - t0, ()
    return detections, seconds, notes, model.weights
