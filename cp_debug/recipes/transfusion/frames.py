"""TransFusion-L frame by frame (`recipes.frame_model.FrameModel`), as sweep and eval run it: the bisect's two stages
(`subject.py`), a frame's points voxelized by cp_debug's voxelizer as bisect and infer feed the model, and the boxes
Autoware's node publishes for the last stage's outputs (`detections.py`, its shipped post-process for this model)."""

from __future__ import annotations

import numpy as np

from cp_debug.errors import BadInputError
from cp_debug.recipe_contract.frame_model import FrameModel


def transfusion_frame_model(preset: str, checkpoint=None, seed: int = 0, random_weights: bool = False) -> FrameModel:
    """The `FrameModel` of `preset` with `checkpoint`'s weights (else the shipped ones, else random from `seed`)."""
    from cp_debug.recipes.transfusion.detections import NodeParams, deployed_outputs, node_detections
    from cp_debug.recipes.transfusion.subject import transfusion_subject

    subject = transfusion_subject(preset=preset, checkpoint=checkpoint, seed=seed, random_weights=random_weights)
    from cp_debug.models.transfusion.presets import get_preset

    cfg = get_preset(preset)
    params = NodeParams().for_model(cfg)

    def feed(points: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        from cp_debug.lidar.points import prepare_points
        from cp_debug.lidar.voxelize import voxelize
        from cp_debug.recipes.transfusion.stages import BEV_INPUTS

        vox = voxelize(torch.as_tensor(prepare_points(np.asarray(points), cfg, source="points")), cfg)
        if int(vox.num_voxels) == 0:
            raise BadInputError(f"no point lies inside {cfg.name!r}'s point_cloud_range")
        n = int(vox.num_voxels)
        return dict(zip(BEV_INPUTS, (vox.voxels[:n].float().numpy(), vox.num_points[:n].to(torch.int32).numpy(),
                                     vox.coors[:n].to(torch.int32).numpy())))

    def detections(outputs: dict[str, np.ndarray]):
        return node_detections(deployed_outputs(outputs, params.num_proposals), params)

    return FrameModel("transfusion", cfg, subject, feed, detections, (params.score_cut, params.num_proposals))

