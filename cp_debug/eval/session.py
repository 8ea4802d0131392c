"""One evaluation: scenes, weights, every backend over every scene, metrics, diffs and diagnoses.

Checks that can fail fast (backend specs and availability, the detections file's format and tokens) run
before the slow work (ONNX export, calibration, inference).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ContextManager

from cp_debug.backends.spec import BackendSpec
from cp_debug.determinism import Determinism
from cp_debug.errors import BadInputError
from cp_debug.eval.report import EvalReport

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.recipe_contract.recipe import Recipe

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
    recipe: "Recipe" = field(kw_only=True)  # the recipe of `preset`, resolved by the command line


def load_weights(preset: str, checkpoint: Path | None, random_weights: bool, seed: int, recipe: "Recipe"):
    """The model of `preset` in `recipe`: `checkpoint`, seeded random weights, or the recipe's default weights (its
    `load_model`'s)."""
    from cp_debug.lidar.record import ModelRecord

    if random_weights and checkpoint is not None:
        raise BadInputError("--random-weights and --checkpoint exclude each other; give one")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise BadInputError(f"--checkpoint {checkpoint} does not exist")
    record = ModelRecord.of(preset, checkpoint=checkpoint, random_weights=random_weights, seed=seed)
    return recipe.load_model(record)


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

    step = step or (lambda text: contextlib.nullcontext())
    specs = dict(opts.backends)
    for spec in specs.values():
        check_available(spec)
    cfg = opts.recipe.config(opts.preset)
    cut = opts.recipe.box_cut(cfg)
    if opts.detections_file is not None and not Path(opts.detections_file).is_file():
        raise BadInputError(f"--detections {opts.detections_file} does not exist")

    with step(f"reading scenes from {opts.scenes_dir}" if opts.scenes_dir else f"generating {opts.n} held-out scenes"):
        scenes = (unique_tokens(from_infos(opts.scenes_dir, cfg, opts.data_root, task="evaluate"), opts.scenes_dir)
                  if opts.scenes_dir else [f.in_memory(cfg) for f in held_out(opts.n)])
    tokens = [s.token for s in scenes]
    file_dets = absent = None
    if opts.detections_file is not None:
        file_dets, _meta, absent = read_results(opts.detections_file, cfg.class_names, tokens)
    if opts.recipe.runs_frame_model:
        detections, seconds, notes, weights = _run_staged(opts, specs, scenes, progress, step)
        calibrated = False
    else:
        with step("loading weights"):
            loaded = load_weights(opts.preset, opts.checkpoint, opts.random_weights, opts.seed, opts.recipe)
        weights = loaded.weights
        pair = opts.recipe.plugin("eval")  # its frames on a pipeline of its own: its `eval` plug-in's
        detections, seconds, notes, calibrated = pair.run_backends(opts, specs, cfg, loaded, scenes, progress, step)

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
                "tolerance_mode": opts.tolerance_mode, "recipe": opts.recipe.name}
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


def _run_staged(opts: EvalOptions, specs: dict, scenes: list, progress: ProgressFactory,
                step: Callable[[str], ContextManager]) -> tuple[dict, dict, dict, str]:
    """Every backend of `specs` on the scenes through the recipe's `FrameModel` (recipe_contract/frame_model.py: each
    backend's stages end to end, its own decisions, the boxes its deployment makes): detections, seconds and notes by
    label, and the weights in words."""
    import time

    from cp_debug.eval.boxes import SampleBoxes
    from cp_debug.recipe_contract.frame_model import StagedPipeline

    if opts.int8_dir is not None:
        raise BadInputError(f"--int8 is CenterPoint's; not for --recipe {opts.recipe.name}")
    for label, spec in specs.items():
        if spec.calibrated or spec.onnx_dir is not None:
            raise BadInputError(f"{label}: INT8, FP8 and deployed folders (SPEC@DIR) are not built for --recipe "
                                f"{opts.recipe.name}; use fp32 / fp16 backends")
    if opts.random_weights and opts.checkpoint is not None:
        raise BadInputError("--random-weights and --checkpoint exclude each other; give one")
    with step("loading weights, exporting the stages"):
        model = opts.recipe.make_frame_model(opts.preset, opts.checkpoint, opts.seed, opts.random_weights)
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
