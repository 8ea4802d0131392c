"""CenterPoint as a `Recipe` (recipe_contract/recipe.py): presets and AWML/mmdet3d or autoware-ml configs read by
`models/centerpoint`, the two-stage pair (voxel encoder, backbone/neck/head) with its own staged pipeline, boxes cut
where the preset's decode cuts them."""

from __future__ import annotations

from cp_debug.recipe_contract.recipe import Recipe


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
    from cp_debug.models.centerpoint.presets import PRESET_NAMES, get_preset

    if model.model_name not in PRESET_NAMES:  # a shipped name is known as it is: its file is read where it loads
        get_preset(model.model_name)


def _box_cut(cfg) -> tuple[float, int | None]:
    return float(cfg.score_threshold), cfg.post_max_size


def _frame_subject(preset: str, *, checkpoint=None, seed: int = 0, random_weights: bool = False, int8=None,
                   points=None, truth=None):
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    return centerpoint_subject(preset=preset, checkpoint=checkpoint, points=points, seed=seed,
                               random_weights=random_weights, int8=int8, truth=truth)


def _bisect_subject(model, *, points=None, load_dim=None, use_dim=None, params=()):
    if model.factory is not None:
        from cp_debug.recipes.centerpoint.subject import factory_subject

        return factory_subject(model.factory, points=points, seed=model.seed, load_dim=load_dim, use_dim=use_dim)
    from cp_debug.recipes.centerpoint.kept_subject import kept_subject
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    def make():
        return centerpoint_subject(preset=model.model_name, checkpoint=model.checkpoint, points=points,
                                   seed=model.seed, load_dim=load_dim, use_dim=use_dim,
                                   random_weights=model.random_weights, int8=model.int8)

    plain = model.checkpoint is None and points is None and model.int8 is None
    return kept_subject(model.model_name, {"seed": model.seed, "random_weights": bool(model.random_weights),
                                           "load_dim": load_dim, "use_dim": use_dim}, make) if plain else make()


def _load_model(model):
    from cp_debug.models.centerpoint.source import load_model

    return load_model(model.model_name, model.checkpoint, model.seed, random_weights=model.random_weights)


def _weights_label(model) -> str:
    from cp_debug.models.centerpoint.source import weights_label

    if model.factory is not None:
        return f"model factory {model.factory}"
    return weights_label(model.model_name, model.checkpoint, model.seed, model.random_weights)


def _export_files(loaded, out, *, sample_points=None, rot_y_axis_reference: bool = False) -> tuple:
    from cp_debug.recipes.centerpoint.export import export_onnx

    result = export_onnx(loaded.model, loaded.cfg, out, rot_y_axis_reference=rot_y_axis_reference,
                         sample_points=sample_points)
    return result.voxel_encoder, result.backbone


def _infer_stages(cfg, points, load, **options) -> tuple:
    from cp_debug.recipes.centerpoint.infer import infer_stages

    return infer_stages(cfg, points, load, **options)


RECIPE = Recipe(
    name="centerpoint", title="CenterPoint", package="cp_debug.recipes.centerpoint",
    plugins=frozenset({"bench", "eval", "fix", "kit", "lint", "ptq", "replay", "sweep", "train"}),
    model_types=_model_types, preset_config=_preset_config, check_model=_check_model, box_cut=_box_cut,
    frame_model=None, frame_subject=_frame_subject, bisect_subject=_bisect_subject, load_model=_load_model,
    weights_label=_weights_label, export_files=_export_files, infer_stages=_infer_stages,
    default_preset="demo",
    graph_files=("pts_voxel_encoder.onnx", "pts_backbone_neck_head.onnx"), sweep_level="block",
    head_outputs=("heatmap", "reg", "height", "dim", "rot", "vel"),
    fix_from_reports=True,
)
