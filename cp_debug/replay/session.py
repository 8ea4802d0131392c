"""One replay: the model, its runner, every frame of a source against every glue variant, the report."""

from __future__ import annotations

from typing import Callable

from cp_debug.replay.engine import ReferenceRunner, ReplayOptions, replay_frames
from cp_debug.replay.report import ReplayReport, score_groups, score_variants
from cp_debug.replay.sources import FrameSource


def replay(source: FrameSource, runner: ReferenceRunner, weights: str, opts: ReplayOptions = ReplayOptions(),
           on_frame: Callable[[int], None] | None = None) -> ReplayReport:
    """Replay `source` on an active `runner` (a `with ReferenceRunner(...)` block)."""
    variants, frames = replay_frames(runner, source.frames, opts, on_frame)
    settings = {"seeds": list(opts.seeds), "max_voxels": [runner.cfg.max_voxels, *opts.max_voxels],
                "tolerances": vars(opts.tolerances).copy(), "frames": len(frames), "engine_runs": runner.runs}
    return ReplayReport(source.source, runner.cfg.name, weights, source.pairing,
                        tuple(score_variants(variants, frames)),
                        tuple(frames), settings, tuple(score_groups(variants, frames)))


def run_replay(source: FrameSource, preset: str, checkpoint=None, random_weights: bool = False, seed: int = 0,
               opts: ReplayOptions = ReplayOptions(), on_frame: Callable[[int], None] | None = None) -> ReplayReport:
    from cp_debug.eval.session import load_weights

    loaded = load_weights(preset, checkpoint, random_weights, seed)
    with ReferenceRunner(loaded.model, loaded.cfg) as runner:
        return replay(source, runner, loaded.weights, opts, on_frame)
