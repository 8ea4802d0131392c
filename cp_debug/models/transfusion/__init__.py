"""Pure-PyTorch TransFusion-L (pillars, SECOND, SECONDFPN, TransFusionHead) as AWML builds it, with its state_dict keys.

Modules: config (the dataclass), presets (the shipped configs/NAME.py by name), config_file (AWML config files),
transformer (the decoder layer), transfusion_head (the head's eval-mode forward), bbox_coder (decode and
predict), model (the detector and its initialisation). The voxel encoder, scatter, backbone and neck are
CenterPoint's (cp_debug.models.centerpoint). Nothing is imported here, so `config` stays importable without torch.
"""
