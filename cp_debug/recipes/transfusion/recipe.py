"""TransFusion-L as a `Recipe` (recipe_contract/recipe.py): presets and AWML TransFusion configs read by
`models/transfusion`, one ONNX graph as Autoware deploys it, its frames through a `FrameModel`, boxes cut where
Autoware's node cuts them."""

from __future__ import annotations

from cp_debug.recipe_contract.recipe import Recipe


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


def _bisect_subject(model, *, points=None, load_dim=None, use_dim=None, params=()):
    from cp_debug.recipes.transfusion.subject import transfusion_subject

    return transfusion_subject(preset=model.model_name, checkpoint=model.checkpoint, points=points, seed=model.seed,
                               load_dim=load_dim, use_dim=use_dim, random_weights=model.random_weights,
                               params=params)


def _check_bisect(model, pairs) -> None:
    """A kit's results refused (the target ran the one graph, which the bisect cuts in two at the proposal
    selection: the command that reads them instead is said); a deployed one graph checked (Autoware's interface,
    its TopK) before the model loads."""
    from cp_debug.errors import BadInputError

    kit = next((label for label, spec in pairs if spec.kit), None)
    if kit is not None:
        from cp_debug.backends.kit.kit_files import onnx_inputs

        d = kit.split("@", 1)[1]
        raise BadInputError(f"{kit}: the target ran TransFusion-L's one graph, which --recipe transfusion cuts in two "
                            f"at the proposal selection; read it with `cpdebug bisect --onnx {d}/transfusion.onnx "
                            f"--inputs {d}/{onnx_inputs('frame_000', 'transfusion')} --backends ort,{kit}`")
    for _, spec in pairs:
        if spec.onnx_dir is not None:
            from cp_debug.recipes.transfusion.split import deployed_file

            deployed_file(spec.onnx_dir, str(spec))


def _load_model(model):
    from cp_debug.recipes.transfusion.source import load_transfusion

    return load_transfusion(model.model_name, model.checkpoint, model.seed, model.random_weights)


def _weights_label(model) -> str:
    from cp_debug.lidar.record import weights_phrase
    from cp_debug.recipes.transfusion.source import shipped_checkpoint

    return weights_phrase(model.model_name, model.checkpoint, model.seed, model.random_weights,
                          lambda: shipped_checkpoint(model.model_name) is not None)


def _export_files(loaded, out, *, sample_points=None, rot_y_axis_reference: bool = False) -> tuple:
    from cp_debug.recipes.transfusion.export import export_transfusion

    return (export_transfusion(loaded.model, loaded.cfg, out, sample_points=sample_points).path,)


def _infer_scan(loaded, points, device: str = "cpu") -> tuple:
    from cp_debug.recipes.transfusion.infer import run_transfusion

    result = run_transfusion(loaded.model, loaded.cfg, points, device=device)
    said = f"of {loaded.cfg.num_proposals} proposals, {result.num_voxels} voxels, "
    return dict(result.head), result.detections, result.timings, said


# the options of CenterPoint's (or not built for TransFusion-L yet) each command refuses
_REFUSES = {
    "bisect": ("--int8",),
    "export": ("--rot-y-axis-reference",),
    "infer": ("--encoder", "--backbone", "--onnx-dir", "--(no-)rot-y-axis-reference"),
    "eval": ("--int8",),
    "sweep": ("--int8", "--params", "--scenes", "--lidar-topic", "--ray", "--rrd", "--pictures"),
}

RECIPE = Recipe(
    name="transfusion", title="TransFusion-L", package="cp_debug.recipes.transfusion",
    plugins=frozenset({"fix", "kit", "lint", "train"}),
    model_types=_model_types, preset_config=_preset_config, box_cut=_box_cut, frame_model=_frame_model,
    frame_subject=_frame_subject, bisect_subject=_bisect_subject, check_bisect=_check_bisect,
    load_model=_load_model, weights_label=_weights_label, export_files=_export_files, infer_scan=_infer_scan,
    default_preset="transfusion-demo", graph_files=("transfusion.onnx",), sweep_level="stage", keep_fp32_is_fix=True,
    refuses=_REFUSES, fix_from_reports=False,
)
