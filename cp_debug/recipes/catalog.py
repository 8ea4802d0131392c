"""The built-in recipes by name, for the features that run any of them frame by frame (sweep, eval) and know none:
the model config of a preset, where a recipe's deployment cuts its boxes by score, its `FrameModel`
(`recipes/staged.py`) and the bisect subject of one frame. CenterPoint's frames still run on its own glue
(`recipes/centerpoint/pipeline.py`), so it has no `FrameModel`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.subject import Subject
    from cp_debug.recipes.staged import FrameModel

RECIPES = ("centerpoint", "transfusion")
FRAME_MODELS = ("transfusion",)  # the recipes whose frames run through a `FrameModel`


def runs_frame_model(recipe: str) -> bool:
    """Whether `recipe`'s frames run through its `FrameModel` (else through its own pipeline)."""
    return _check(recipe) in FRAME_MODELS


def _check(recipe: str) -> str:
    if recipe not in RECIPES:
        raise BadInputError(f"unknown recipe {recipe!r}: the built-in recipes are {', '.join(RECIPES)}")
    return recipe


def model_types(recipe: str) -> tuple[str, ...]:
    """The `model.type`s of an AWML/mmdet3d config that `recipe`'s config reader builds (`MODEL_TYPES` beside it)."""
    if _check(recipe) == "transfusion":
        from cp_debug.models.transfusion.config_file import MODEL_TYPES
    else:
        from cp_debug.models.centerpoint.config_file import MODEL_TYPES
    return MODEL_TYPES


def recipe_of_config(path) -> str:
    """The recipe that builds the model a `--config` file names, for a command given no `--recipe`: the recipe whose
    reader claims the file's `model.type` (a TransFusion config runs TransFusion-L, not CenterPoint's reader refusing
    it). An autoware-ml YAML config is CenterPoint's (its reader is the only one); a config with no `model.type` goes
    to CenterPoint's reader, which says what is missing. Reads the file as the reader will (mmengine)."""
    if str(path).lower().endswith((".yaml", ".yml")):
        return "centerpoint"
    from cp_debug.models.centerpoint.config_file import load_config_dict

    model = load_config_dict(path).get("model")
    kind = model.get("type") if isinstance(model, dict) else None
    if kind is None:
        return "centerpoint"
    claims = {recipe: model_types(recipe) for recipe in RECIPES}
    found = [recipe for recipe, types in claims.items() if kind in types]
    if not found:
        built = "; ".join(f"{', '.join(map(repr, types))} (--recipe {recipe})" for recipe, types in claims.items())
        raise BadInputError(f"config {path}: model.type = {kind!r} is built by no recipe of cp_debug; built: {built}")
    return found[0]


def preset_config(recipe: str, preset: str):
    """The model config of `preset` (a name or a config file) in `recipe`."""
    if _check(recipe) == "transfusion":
        from cp_debug.models.transfusion.presets import get_preset
    else:
        from cp_debug.models.centerpoint.presets import get_preset
    return get_preset(preset)


def box_cut(recipe: str, cfg) -> tuple[float, int | None]:
    """(score threshold, cap): where `recipe`'s deployment cuts the boxes of model `cfg` (TransFusion-L: the node's)."""
    if _check(recipe) == "transfusion":
        from cp_debug.recipes.transfusion.detections import NodeParams

        params = NodeParams().for_model(cfg)
        return params.score_cut, params.num_proposals
    return float(cfg.score_threshold), cfg.post_max_size


def frame_model(recipe: str, preset: str, checkpoint=None, seed: int = 0, random_weights: bool = False) -> FrameModel:
    """`recipe`'s `FrameModel` of `preset`; CenterPoint has none (its frames run on its own pipeline)."""
    if not runs_frame_model(recipe):
        raise BadInputError(f"recipe {recipe!r} runs its frames on its own pipeline")
    from cp_debug.recipes.transfusion.frames import transfusion_frame_model

    return transfusion_frame_model(preset, checkpoint, seed, random_weights)


def frame_subject(recipe: str, preset: str, *, checkpoint=None, seed: int = 0, random_weights: bool = False,
                  int8=None, points=None, truth=None) -> "Subject":
    """The bisect subject of one frame's scan `points` (a `LoadedPoints`) in `recipe` (`truth`: its ground truth)."""
    if _check(recipe) == "transfusion":
        from cp_debug.recipes.transfusion.subject import transfusion_subject

        return transfusion_subject(preset=preset, checkpoint=checkpoint, points=points, seed=seed,
                                   random_weights=random_weights)
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    return centerpoint_subject(preset=preset, checkpoint=checkpoint, points=points, seed=seed,
                               random_weights=random_weights, int8=int8, truth=truth)
