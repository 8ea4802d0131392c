"""CenterPoint as a bisect subject: two stages (the two ONNX files AWML deploys) joined by shared glue.

Voxelization and the decorated features are computed once in PyTorch and given to every backend (voxel
order differs between implementations otherwise); the scatter between the stages runs in PyTorch FP32 on
each backend's own pillar features, so error flows from the voxel encoder into the backbone as it does in
deployment.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cp_debug.bisect.subjects.model_facts import RecipeFacts
from cp_debug.bisect.subjects.subject import Stage, Subject
from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.data.frames import GroundTruth
    from cp_debug.data.point_files import LoadedPoints

# The `stage` level: each PFN layer; each SECOND block (or each ConvNeXt_PC downsample layer, stage and output
# norm), each neck deblock, the shared conv and each head.
def _encoder_probes(model) -> tuple[str, ...]:
    return tuple(f"pts_voxel_encoder.pfn_layers.{i}" for i in range(len(model.pts_voxel_encoder.pfn_layers)))


def _backbone_probes(model) -> tuple[str, ...]:
    names = [f"pts_backbone.{n}" for n in model.pts_backbone.stage_names()]
    names += [f"pts_neck.deblocks.{i}" for i in range(len(model.pts_neck.deblocks))]
    names.append("pts_bbox_head.shared_conv")
    head = model.pts_bbox_head.task_heads[0]
    names += [f"pts_bbox_head.task_heads.0.{h}" for h, _ in head.named_children()]
    return tuple(names)


def _scan(cfg, points: "str | Path | LoadedPoints | None", seed: int, load_dim: int | None,
          use_dim: int | tuple[int, ...] | None) -> "tuple[LoadedPoints, str | None, GroundTruth | None]":
    """(the scan, its file or None, its ground truth where it brings one): a point file (`load_dim`/`use_dim` read
    it as mmdet3d's LoadPointsFromFile), a scan already in memory (`data.point_files.LoadedPoints`, e.g. a sweep's
    frame: no temporary file), or None: the model's synthetic scan of `seed` (`data.frames.ModelScan`, bisect's
    default input, made once: its boxes are its truth)."""
    from cp_debug.data.frames import ModelScan
    from cp_debug.data.point_files import LoadedPoints, load_point_file, points_from_array

    if isinstance(points, LoadedPoints):
        return points, None, None
    if points is not None:
        return load_point_file(points, cfg, load_dim=load_dim, use_dim=use_dim), str(points), None
    source = ModelScan(seed)
    scan = source.load(cfg)
    return points_from_array(scan.points, cfg, source.describe()), None, scan.truth


def centerpoint_subject(preset="demo", checkpoint: str | Path | None = None,
                        points: "str | Path | LoadedPoints | None" = None,
                        seed: int = 0, trace_side: int = 128, load_dim: int | None = None,
                        use_dim: int | tuple[int, ...] | None = None, random_weights: bool = False,
                        int8: str | Path | None = None, truth: "GroundTruth | None" = None) -> Subject:
    """The two-stage subject. `points`: a point file, a scan in memory or None (see `_scan`); what loading did
    (points read, dropped, zero-filled columns) is in `facts.point_cloud`, its warnings in
    `subject.warnings`. Weights as `load_model` gives them: the checkpoint, else the preset's shipped
    trained weights (demo), else (or with `random_weights`) the seeded random initialisation. With `int8`
    (a PTQ dir or checkpoint) the model is that checkpoint's BN-fused fake-quant model (see int8_source.py).
    `preset`: a preset name, a config file (.py or .yaml) or a CenterPointConfig (`read_config`). `truth`: the
    scan's ground truth for the BEV pictures (a sweep's frame); the synthetic scan brings its own."""
    from cp_debug.bisect.result import BevScene
    from cp_debug.models.centerpoint.decode import HEAD_NAMES, decode
    from cp_debug.models.centerpoint.presets import as_config
    from cp_debug.models.centerpoint.model import (BACKBONE_INPUTS, HEAD_OUTPUTS, VOXEL_ENCODER_INPUTS,
                                                   VOXEL_ENCODER_OUTPUTS, BackboneNeckHeadStage, VoxelEncoderStage)
    from cp_debug.recipes.centerpoint.detection_verdict import detection_verdict

    cfg = as_config(preset)
    loaded, points_file, own_truth = _scan(cfg, points, seed, load_dim, use_dim)  # a bad file fails fast
    pts = loaded.points
    from cp_debug.models.centerpoint.source import load_model

    truth = truth if truth is not None else own_truth
    int8_info = None
    if int8 is not None:
        from cp_debug.recipes.centerpoint.int8_source import load_int8_model

        if checkpoint is not None or random_weights:
            raise BadInputError("--int8 brings its own (BN-fused) weights: drop --checkpoint / --random-weights")
        loaded_int8 = load_int8_model(int8, cfg)
        model, source, int8_info = loaded_int8.model, loaded_int8.weights, loaded_int8.info
    else:
        weights = load_model(cfg, checkpoint, seed, random_weights=random_weights)
        model, source = weights.model, weights.weights
    model.eval()
    vox, feats = _decorated(cfg, pts)
    coors = vox.coors
    encoder = VoxelEncoderStage(model).eval()
    backbone = BackboneNeckHeadStage(model).eval()
    if int8 is not None:
        from cp_debug.quant.quantizers import mark_ptq

        mark_ptq(encoder), mark_ptq(backbone)
    ex_feats, ex_spatial = _examples(cfg, feats, trace_side, seed)
    export_encoder, export_backbone = _exports(encoder, backbone, ex_feats, ex_spatial, cfg)

    from cp_debug.models.centerpoint.autoware_ml_names import to_cp_debug  # autoware-ml's deployed files' scopes
    from cp_debug.recipes.centerpoint.int8_source import qdq_export

    enc_stage = Stage(
        name="pts_voxel_encoder", input_names=VOXEL_ENCODER_INPUTS, output_names=VOXEL_ENCODER_OUTPUTS,
        module=encoder, example_inputs=(ex_feats,), stage_probes=_encoder_probes(model), foreign_names=to_cp_debug,
        export=export_encoder, qdq_export=qdq_export(model, export_encoder) if int8 is not None else None)
    bb_stage = Stage(
        name="pts_backbone_neck_head", input_names=BACKBONE_INPUTS, output_names=HEAD_OUTPUTS,
        module=backbone, example_inputs=(ex_spatial,), stage_probes=_backbone_probes(model),
        output_aliases={h: f"pts_bbox_head.task_heads.0.{h}" for h in HEAD_OUTPUTS}, foreign_names=to_cp_debug,
        export=export_backbone, qdq_export=qdq_export(model, export_backbone) if int8 is not None else None)
    scatter = model.pts_middle_encoder
    if int8_info is not None:
        from cp_debug.recipes.centerpoint.int8_source import layer_quant_error

        def forward_once(_):
            pillars = encoder(feats)
            backbone(scatter(pillars.reshape(pillars.shape[0], -1), coors, 1))

        int8_info["quantization"] = layer_quant_error(model, forward_once)

    glue = _glue(scatter, coors)
    return Subject(
        name=f"centerpoint:{cfg.name}", stages=[enc_stage, bb_stage],
        inputs={"input_features": feats.numpy()}, glue=glue, default_level="stage",
        facts=_facts(cfg, source, loaded, points_file, seed, load_dim, use_dim, vox,
                     checkpoint=str(checkpoint) if checkpoint else None, random_weights=bool(random_weights),
                     int8=int8_info),
        warnings=list(loaded.warnings), detection_verdict=detection_verdict(cfg),
        scene=BevScene(cfg, pts, truth, decode=decode, head_names=HEAD_NAMES))


def _facts(cfg, weights: str, loaded: "LoadedPoints", points_file: str | None, seed: int, load_dim: int | None,
           use_dim: int | tuple[int, ...] | None, vox, **more) -> RecipeFacts:
    """The report's facts of a CenterPoint run: the settings, the weights, the scan as named and as read (the point
    reader's record and warnings), its points and voxels and the grid; `more`: the run's own (checkpoint, --int8, a
    model factory's)."""
    return RecipeFacts("centerpoint", cfg.name, weights, points=points_file or loaded.source, points_file=points_file,
                       seed=seed, load_dim=load_dim, use_dim=use_dim,
                       point_cloud={**loaded.info(), "warnings": list(loaded.warnings)},
                       num_points=int(len(loaded.points)), num_voxels=int(vox.num_voxels), grid=tuple(cfg.grid_size),
                       **more)


def _decorated(cfg, pts):
    """(voxels, decorated input_features) of a scan: cp_debug's voxelizer and decoration, shared by every backend."""
    import torch

    from cp_debug.models.centerpoint.pillar_encoder import get_input_features
    from cp_debug.lidar.voxelize import voxelize

    with torch.no_grad():
        vox = voxelize(torch.as_tensor(pts), cfg)
        feats = get_input_features(vox.voxels, vox.num_points, vox.coors, cfg)
    return vox, feats


def _examples(cfg, feats, trace_side: int, seed: int):
    """(input_features, spatial_features) the stages are traced and exported with: the scan's first 2000 pillars,
    and a seeded non-negative BEV map of at most `trace_side` cells a side (the axes are dynamic)."""
    import torch

    nx, ny = cfg.grid_size
    ex_spatial = torch.zeros(1, cfg.pillar_channels, min(ny, trace_side), min(nx, trace_side))
    ex_spatial.normal_(generator=torch.Generator().manual_seed(seed)).relu_()
    return feats[: min(len(feats), 2000)], ex_spatial


def _exports(encoder, backbone, ex_feats, ex_spatial, cfg):
    """The two stages' exports as the deployment exports them (TorchScript exporter, opset 17, the files' names
    and dynamic axes), each called when the run first needs the graph."""
    from cp_debug.export.cache import export_cached
    from cp_debug.models.centerpoint.model import (BACKBONE_INPUTS, HEAD_OUTPUTS, VOXEL_ENCODER_INPUTS,
                                                   VOXEL_ENCODER_OUTPUTS)

    # through the export cache (a second run of the same model, weights and example inputs reads the graph back)
    def export_encoder():
        return export_cached(encoder, (ex_feats,), VOXEL_ENCODER_INPUTS, VOXEL_ENCODER_OUTPUTS,
                             exporter="torchscript", opset=17, extra=cfg,
                             dynamic_axes={"input_features": {0: "num_voxels", 1: "num_max_points"},
                                           "pillar_features": {0: "num_voxels"}})

    def export_backbone():
        return export_cached(backbone, (ex_spatial,), BACKBONE_INPUTS, HEAD_OUTPUTS, exporter="torchscript", opset=17,
                             extra=cfg,
                             dynamic_axes={"spatial_features": {0: "batch_size", 2: "height", 3: "width"},
                                           **{h: {0: "batch_size", 2: "height", 3: "width"} for h in HEAD_OUTPUTS}})

    return export_encoder, export_backbone


def _glue(scatter, coors):
    """Stage 1's feed from a backend's own pillar features: the scatter in PyTorch FP32, as deployed. Its `kept`:
    what `kept_subject.scatter_glue` makes the same glue of without torch (mmdet3d's scatter; else None)."""
    import torch

    from cp_debug.models.centerpoint.scatter import PointPillarsScatter

    def glue(index: int, upstream: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pillars = torch.as_tensor(np.asarray(upstream["pillar_features"], dtype=np.float32))
        with torch.no_grad():
            spatial = scatter(pillars.reshape(pillars.shape[0], -1), coors, 1)
        return {"spatial_features": spatial.numpy()}

    glue.kept = ((coors.numpy().copy(), scatter.in_channels, scatter.ny, scatter.nx)  # type: ignore[attr-defined]
                 if type(scatter) is PointPillarsScatter else None)
    return glue


def factory_subject(target: str, points: "str | Path | LoadedPoints | None" = None, seed: int = 0,
                    trace_side: int = 128, load_dim: int | None = None,
                    use_dim: int | tuple[int, ...] | None = None) -> Subject:
    """The two-stage subject of a `--model-factory FILE.py:FUNC`: the user's voxel encoder and backbone/neck/head
    (`models.centerpoint.factory.UserCenterPoint`) hooked under their own module names, exported as the deployment
    exports them, with cp_debug's voxelizer, decoration, scatter and decode around them. Where a module breaks the
    contract (an output that is not a tensor, a dict, a wrong shape, a stage that does not export) one line names
    the stage and the module."""
    import torch

    from cp_debug.bisect.subjects.loaders import user_function
    from cp_debug.models.centerpoint.factory import (check_encoder_output, check_factory_result,
                                                     check_head_outputs, factory_config)
    from cp_debug.models.centerpoint.model import (BACKBONE_INPUTS, HEAD_OUTPUTS, STAGE_BACKBONE, STAGE_VOXEL_ENCODER,
                                                   VOXEL_ENCODER_INPUTS, VOXEL_ENCODER_OUTPUTS)
    from cp_debug.models.centerpoint.scatter import PointPillarsScatter
    from cp_debug.recipes.centerpoint.detection_verdict import detection_verdict

    where = f"--model-factory {target}"
    fn = user_function(target, "--model-factory", seed=seed)
    with torch.random.fork_rng(devices=[]):  # the factory's seeding stays its own
        got = check_factory_result(fn(), where)
    cfg = factory_config(got.config, where)
    loaded, points_file, _ = _scan(cfg, points, seed, load_dim, use_dim)
    pts = loaded.points
    encoder = _named(got.voxel_encoder_prefix, got.voxel_encoder).eval()
    backbone = _named(got.backbone_neck_head_prefix, got.backbone_neck_head).eval()
    shared = sorted({n for n, _ in encoder.named_modules() if n} & {n for n, _ in backbone.named_modules() if n})
    if shared:
        raise BadInputError(f"{where}: the voxel encoder and the backbone/neck/head share module names "
                            f"({', '.join(shared[:3])}): set voxel_encoder_prefix / backbone_neck_head_prefix "
                            "(where each sits in your model) so every probe has one name")
    vox, feats = _decorated(cfg, pts)
    coors = vox.coors
    if vox.num_voxels == 0:
        raise BadInputError(f"{where}: the scan has no point inside point_cloud_range {list(cfg.point_cloud_range)}")
    ex_feats, ex_spatial = _examples(cfg, feats, trace_side, seed)
    scatter = PointPillarsScatter(cfg.pillar_channels, cfg.grid_size[::-1])
    with torch.no_grad():
        pillars = _forward(encoder, feats, STAGE_VOXEL_ENCODER, got.voxel_encoder)
        check_encoder_output(pillars, got.voxel_encoder, cfg, int(vox.num_voxels), STAGE_VOXEL_ENCODER)
        spatial = scatter(pillars.reshape(pillars.shape[0], -1).float(), coors, 1)
        check_head_outputs(_forward(backbone, spatial, STAGE_BACKBONE, got.backbone_neck_head), got.backbone_neck_head,
                           cfg, tuple(spatial.shape), STAGE_BACKBONE)
        check_head_outputs(_forward(backbone, ex_spatial, STAGE_BACKBONE, got.backbone_neck_head),
                           got.backbone_neck_head, cfg, tuple(ex_spatial.shape), STAGE_BACKBONE)
        aliases = _output_aliases(backbone, ex_spatial, HEAD_OUTPUTS)
    export_encoder, export_backbone = _exports(encoder, backbone, ex_feats, ex_spatial, cfg)
    enc_stage = Stage(
        name=STAGE_VOXEL_ENCODER, input_names=VOXEL_ENCODER_INPUTS, output_names=VOXEL_ENCODER_OUTPUTS,
        module=encoder, example_inputs=(ex_feats,),
        export=_named_export(export_encoder, STAGE_VOXEL_ENCODER, got.voxel_encoder))
    bb_stage = Stage(
        name=STAGE_BACKBONE, input_names=BACKBONE_INPUTS, output_names=HEAD_OUTPUTS,
        module=backbone, example_inputs=(ex_spatial,), output_aliases=aliases,
        export=_named_export(export_backbone, STAGE_BACKBONE, got.backbone_neck_head))
    for st, prefix in ((enc_stage, got.voxel_encoder_prefix), (bb_stage, got.backbone_neck_head_prefix)):
        st.stage_probes = st.trace().children.get(prefix, ())  # the `stage` level: the modules that ran directly
        # under the user's module (a ModuleList/ModuleDict never runs itself: its members stand for it)
    return Subject(
        name=f"model-factory:{got.name or cfg.name}", stages=[enc_stage, bb_stage],
        inputs={"input_features": feats.numpy()}, glue=_glue(scatter, coors), default_level="stage",
        facts=_facts(cfg, got.weights, loaded, points_file, seed, load_dim, use_dim, vox, model_factory=target,
                     name=f"model factory {Path(target.rpartition(':')[0]).name}:{target.rpartition(':')[2]} "
                          f"(settings {cfg.name})",
                     modules={STAGE_VOXEL_ENCODER: type(got.voxel_encoder).__name__,
                              STAGE_BACKBONE: type(got.backbone_neck_head).__name__},
                     factory=dict(got.description) if got.description else None),
        warnings=list(loaded.warnings), detection_verdict=detection_verdict(cfg))


def _named(prefix: str, module):
    """`module` under the dotted name `prefix` (nested holders whose forward calls it), or itself for ""."""
    if not prefix:
        return module
    from torch import nn

    class Holder(nn.Module):
        def __init__(self, name: str, child):
            super().__init__()
            self.add_module(name, child)
            self._child_name = name

        def forward(self, *args):
            return getattr(self, self._child_name)(*args)

    for name in reversed(prefix.split(".")):
        module = Holder(name, module)
    return module


def _output_aliases(module, x, names) -> dict[str, str]:
    """Output name -> the outermost module (below the stage's root) that returns that very tensor (e.g. a head's
    Sequential): its probe stands for the output, as cp_debug's own head modules stand for theirs."""
    import torch

    made: dict[int, str] = {}
    alive: list = []  # the tensors whose id() is recorded stay alive for the pass

    def hook(name):
        def record(mod, args, out):
            if isinstance(out, torch.Tensor):
                made[id(out)] = name  # a parent completes after its child: the outermost is recorded last
                alive.append(out)
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in module.named_modules() if n]
    try:
        outs = module(x)
    finally:
        for h in handles:
            h.remove()
    found = {n: made.get(id(o)) for n, o in zip(names, outs)}
    return {n: m for n, m in found.items() if m is not None}


def _forward(module, x, stage: str, user):
    """module(x); an exception is one line naming the stage and the user's module (the contract's input)."""
    try:
        return module(x)
    except Exception as err:  # noqa: BLE001 - the user's code: any failure is a broken contract, said in one line
        from cp_debug.errors import first_line

        what = "input_features" if x.dim() == 3 else "spatial_features"
        raise BadInputError(f"{stage} ({type(user).__name__}) fails on {what} {list(x.shape)}: "
                            f"{type(err).__name__}: {first_line(err)}") from err


def _named_export(export, stage: str, user):
    """`export`, its failure one line naming the stage and the user's module."""
    def run():
        try:
            return export()
        except BadInputError as err:
            raise BadInputError(f"{stage} ({type(user).__name__}) does not export as the deployment exports it "
                                f"(TorchScript exporter, opset 17): {err}") from err

    return run
