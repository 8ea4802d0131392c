"""CenterPoint's part of `cpdebug sweep` (its `sweep` plug-in, recipe_contract/recipe.PLUGINS): its frames run on lanes
of their own, not through a `FrameModel` — each backend's two stage runners (voxel encoder, backbone/neck/head) seen
through taps that keep the level's probes, the pair's glue between them (`lanes.py`, over `pipeline.run_pipeline`), and
the frame loop over every lane, in process or in a Ray actor (`worker.py`). The sweep reaches it through
`SweepSettings.lanes()`; the hooks are the ones `sweep/__init__.py` describes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.recipes.centerpoint.sweep.worker import SweepWorker
    from cp_debug.sweep.records import SweepSettings


def subject(settings: "SweepSettings"):
    """The sweep's subject (its modules and probe maps): the model of `settings` with its two stages exported."""
    from cp_debug.recipes.centerpoint.sweep.lanes import build_subject

    return build_subject(settings)


def stage_bytes(subject) -> dict[str, bytes]:
    """The subject's stage graphs (exported here, once), serialized: stage name -> bytes (what a Ray actor gets)."""
    from cp_debug.recipes.centerpoint.sweep import lanes

    return lanes.stage_bytes(subject)


def with_stages(subject, stages: dict[str, bytes]):
    """`subject` with the graphs of `stages` (as `stage_bytes` gives them) in place of its own exports."""
    from cp_debug.recipes.centerpoint.sweep import lanes

    return lanes.with_stages(subject, stages)


def make_worker(settings: "SweepSettings", onnx_dir: str | Path | None = None, subject=None) -> "SweepWorker":
    """The sweep's worker, not yet opened: every backend's lane built once (`open`), then each frame through all
    of them (`run_frames`); `subject` already built (a Ray actor's, its stages in place) or None."""
    from cp_debug.recipes.centerpoint.sweep.worker import SweepWorker

    return SweepWorker(settings, onnx_dir, subject)
