"""TransFusion-L as a `Recipe` (recipes/contract.py): presets and AWML TransFusion configs read by
`models/transfusion`, one ONNX graph as Autoware deploys it, its frames through a `FrameModel`, boxes cut where
Autoware's node cuts them."""

from __future__ import annotations

from cp_debug.recipes.contract import Recipe


def _model_types() -> tuple[str, ...]:
    from cp_debug.models.transfusion.config_file import MODEL_TYPES

    return MODEL_TYPES


def _preset_config(preset: str):
    from cp_debug.models.transfusion.presets import get_preset

    return get_preset(preset)


def _box_cut(cfg) -> tuple[float, int | None]:
    from cp_debug.recipes.transfusion.detections import NodeParams

    params = NodeParams().for_model(cfg)
    return params.score_cut, params.num_proposals


def _frame_model(preset: str, checkpoint=None, seed: int = 0, random_weights: bool = False):
    from cp_debug.recipes.transfusion.frames import transfusion_frame_model

    return transfusion_frame_model(preset, checkpoint, seed, random_weights)


def _frame_subject(preset: str, *, checkpoint=None, seed: int = 0, random_weights: bool = False, int8=None,
                   points=None, truth=None):
    from cp_debug.recipes.transfusion.subject import transfusion_subject

    return transfusion_subject(preset=preset, checkpoint=checkpoint, points=points, seed=seed,
                               random_weights=random_weights)


RECIPE = Recipe(
    name="transfusion", title="TransFusion-L", package="cp_debug.recipes.transfusion",
    plugins=frozenset({"fix", "kit", "lint", "train"}),
    model_types=_model_types, preset_config=_preset_config, box_cut=_box_cut, frame_model=_frame_model,
    frame_subject=_frame_subject, sweep_level="stage", one_graph=True, fix_from_reports=False,
)
