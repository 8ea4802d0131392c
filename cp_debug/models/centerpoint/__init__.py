"""Pure-PyTorch CenterPoint (pillars, SECOND, SECONDFPN, CenterHead) with mmdet3d's state_dict keys.

Modules: config (the dataclass), presets (the shipped configs/NAME.py by name), config_file (AWML config
files), source (ModelRecord: the model a run names, and its weights), voxelize, pillar_encoder, scatter, second,
second_fpn, centerpoint_head, model (the network and its two export stages), random_init, checkpoint, points,
synthetic, decode.
Nothing is imported here, so `config` stays importable without torch.
"""
