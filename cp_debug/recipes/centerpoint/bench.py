"""CenterPoint's `bench` plug-in (recipe_contract/recipe.PLUGINS): the rows `cpdebug bench` times of its staged pipeline
(`recipes/centerpoint/pipeline.py`), each the pipeline steps whose times (`PipelineResult.timings`) it sums; the
pipeline of one backend and its INT8 calibration feeds (its eval plug-in's), which `bench/run.py` builds."""

from __future__ import annotations

from cp_debug.recipes.centerpoint.eval.backend_pipeline import BackendPipeline, int8_calibration  # noqa: F401 - hooks
from cp_debug.recipes.centerpoint.pipeline import (STAGE_BACKBONE, STAGE_VOXEL_ENCODER, STEP_DECODE,
                                                   STEP_INPUT_FEATURES, STEP_SCATTER, STEP_VOXELIZE)

# (row name, pipeline steps summed into it), in the order of a scan
STAGES = (
    ("voxelize", (STEP_VOXELIZE,)),
    ("input_features", (STEP_INPUT_FEATURES,)),
    ("voxel_encoder", (STAGE_VOXEL_ENCODER,)),
    ("scatter", (STEP_SCATTER,)),
    ("backbone_neck_head", (STAGE_BACKBONE,)),
    ("decode_nms", (STEP_DECODE,)),
)
