"""One replay: the model, its runner, every frame of a source against every glue variant, the report."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Callable

from cp_debug.replay.engine import ReferenceRunner, ReplayOptions, replay_frames
from cp_debug.replay.report import ReplayReport, score_groups, score_variants
from cp_debug.replay.sources import FrameSource

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.recipe_contract.recipe import Recipe


DEMO_PRESET = "demo"


def model_warnings(cfg, checkpoint) -> tuple[str, ...]:
    """What the model of a replay says about the recording's: the built-in demo preset is no deployed model."""
    if cfg.name != DEMO_PRESET:
        return ()
    weights = "weights trained on cp_debug's synthetic scenes" if checkpoint is None else "its own checkpoint"
    return (f"the model is the built-in demo preset ({weights}): on a real recording its boxes are not the "
            "deployed model's, so the verdict says nothing of the deployment; give the deployed model with "
            "--config (or --preset) and --checkpoint",)


def gates(report: ReplayReport, min_match: float | None) -> tuple:
    """`--min-match R`: the deployment's agreement with the reference glue, as the table's `reference` row."""
    from cp_debug.eval.gates import GateCheck

    if min_match is None:
        return ()
    ref = report.reference
    return (GateCheck("--min-match", min_match, ref.fraction,
                      f"the agreement of the deployment's boxes with the reference ({ref.agreeing} agreeing of "
                      f"{ref.deployed} deployed and {ref.boxes} reference boxes)", False),)


def replay(source: FrameSource, runner: ReferenceRunner, weights: str, opts: ReplayOptions = ReplayOptions(),
           on_frame: Callable[[int], None] | None = None, warnings: tuple[str, ...] = ()) -> ReplayReport:
    """Replay `source` on an active `runner` (a `with ReferenceRunner(...)` block); `warnings` join the
    source's in the report."""
    variants, frames = replay_frames(runner, source.frames, opts, on_frame)
    settings = {"seeds": list(opts.seeds), "max_voxels": [runner.cfg.max_voxels, *opts.max_voxels],
                "tolerances": vars(opts.tolerances).copy(), "frames": len(frames), "engine_runs": runner.runs}
    return ReplayReport(source.source, runner.cfg.name, weights, source.pairing,
                        tuple(score_variants(variants, frames)),
                        tuple(frames), settings, tuple(score_groups(variants, frames)),
                        (*warnings, *source.warnings))


def run_replay(source: FrameSource, preset: str, checkpoint=None, random_weights: bool = False, seed: int = 0,
               opts: ReplayOptions = ReplayOptions(), on_frame: Callable[[int], None] | None = None,
               device: str = "cpu", *, recipe: "Recipe") -> ReplayReport:
    """The model of `recipe` loaded, its reference (the recipe's `replay` plug-in) run on `device` (cpu or cuda) over
    every frame of `source`."""
    from cp_debug.eval.session import load_weights

    loaded = load_weights(preset, checkpoint, random_weights, seed, recipe)
    with ReferenceRunner(loaded.model, loaded.cfg, recipe.plugin("replay"), device=device) as runner:
        report = replay(source, runner, loaded.weights, opts, on_frame, model_warnings(loaded.cfg, checkpoint))
    return replace(report, settings={**report.settings, "device": device})
