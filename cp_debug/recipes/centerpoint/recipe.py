"""CenterPoint as a `Recipe` (recipes/contract.py): presets and AWML/mmdet3d or autoware-ml configs read by
`models/centerpoint`, the two-stage pair (voxel encoder, backbone/neck/head) with its own staged pipeline, boxes cut
where the preset's decode cuts them."""

from __future__ import annotations

from cp_debug.recipes.contract import Recipe


def _model_types() -> tuple[str, ...]:
    from cp_debug.models.centerpoint.config_file import MODEL_TYPES

    return MODEL_TYPES


def _preset_config(preset: str):
    from cp_debug.models.centerpoint.presets import get_preset

    return get_preset(preset)


def _check_model(model) -> None:
    """A preset the ModelRecord `model` names is a shipped one: the one line of an unknown name before torch loads (a
    config file and a model factory are read where they load)."""
    if model.factory is not None or model.config is not None:
        return
    from cp_debug.models.centerpoint.presets import get_preset

    get_preset(model.model_name)


def _box_cut(cfg) -> tuple[float, int | None]:
    return float(cfg.score_threshold), cfg.post_max_size


def _frame_subject(preset: str, *, checkpoint=None, seed: int = 0, random_weights: bool = False, int8=None,
                   points=None, truth=None):
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    return centerpoint_subject(preset=preset, checkpoint=checkpoint, points=points, seed=seed,
                               random_weights=random_weights, int8=int8, truth=truth)


RECIPE = Recipe(
    name="centerpoint", title="CenterPoint", package="cp_debug.recipes.centerpoint",
    plugins=frozenset({"fix", "kit", "lint", "train"}),
    model_types=_model_types, preset_config=_preset_config, check_model=_check_model, box_cut=_box_cut,
    frame_model=None, frame_subject=_frame_subject, sweep_level="block", one_graph=False, fix_from_reports=True,
)
