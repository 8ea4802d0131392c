"""CenterPoint's INT8 model in the AWML layout, on the generic blocks of `cp_debug.quant`: its BN fusion (backbone,
neck and head; the PFN keeps its BN1d as AWML does), a PTQ checkpoint checked against its BN-fused structure
(`models/centerpoint/fused.build_fused_model`), the fake-quant CenterPoint built from one, and that of a PTQ dir.

For the backends: `read_ptq_dir(DIR)` -> PtqDir (checkpoint + the two Q/DQ ONNX files `cpdebug quantize` wrote);
torch-*-int8 = `build_fakequant_model(cfg, load_ptq_checkpoint(ptq.checkpoint, cfg))` wrapped in VoxelEncoderStage /
BackboneNeckHeadStage like the FP32 model; ort-*-int8 = the ONNX files as they are.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from cp_debug.errors import CheckpointError
from cp_debug.quant.ptq_checkpoint import PtqDir, PtqState


def fuse_centerpoint(model):
    """A BN-fused copy of a CenterPoint (backbone, neck and head; the PFN keeps its BN1d as AWML does), in the
    structure of `fused.build_fused_model`, so its state dict is the AWML PTQ layout; and the (conv, BN) pairs."""
    from cp_debug.models.centerpoint.model import BackboneNeckHeadStage
    from cp_debug.quant.bn_fusion import fuse_through

    return fuse_through(model, BackboneNeckHeadStage(model))


def ptq_state(cfg, obj, source: str = "checkpoint") -> PtqState:
    """Check a PTQ checkpoint dict (or bare state dict) against preset `cfg`'s BN-fused structure."""
    from cp_debug.models.centerpoint.checkpoint import check_state_dict, extract_state_dict, is_quantizer_key
    from cp_debug.models.centerpoint.fused import build_fused_model
    from cp_debug.quant.ptq_checkpoint import cpu_tensor, quantizer_state

    state, meta = extract_state_dict(obj, source)
    state = OrderedDict((k, cpu_tensor(k, v, source)) for k, v in state.items())
    model = build_fused_model(cfg)
    check_state_dict(model, state, source)  # fused weights: keys and shapes; amax keys name real convs
    return quantizer_state(model, state, meta, cfg.name, source, is_quantizer_key)


def load_ptq_checkpoint(path_or_obj, cfg) -> PtqState:
    """A PTQ checkpoint (path, checkpoint dict or bare state dict) read onto the CPU and checked for `cfg`."""
    import os

    from cp_debug.pickles import read_checkpoint

    if isinstance(path_or_obj, (str, os.PathLike)):
        return ptq_state(cfg, read_checkpoint(path_or_obj), f"checkpoint {path_or_obj}")
    return ptq_state(cfg, path_or_obj)


def build_fakequant_model(cfg, state: PtqState):
    """The BN-fused CenterPoint with the checkpoint's weights and a fake quantizer (its amax) on each quantized
    conv, in eval mode on the CPU. Its stages run like the FP32 model's: VoxelEncoderStage(model) and
    BackboneNeckHeadStage(model) take and give the same tensors."""
    from cp_debug.models.centerpoint.fused import build_fused_model
    from cp_debug.quant.ptq_checkpoint import insert_amax

    if state.preset != cfg.name:
        raise CheckpointError(f"{state.source} was checked for preset {state.preset!r}, not {cfg.name!r}")
    return insert_amax(build_fused_model(cfg), state)


def read_ptq_dir(path: str | Path) -> PtqDir:
    """The files of a PTQ directory of CenterPoint (its checkpoint, `pts_voxel_encoder.onnx`,
    `pts_backbone_neck_head.onnx`, quantization.json), checked to exist."""
    from cp_debug.models.centerpoint.config import BACKBONE_FILE, VOXEL_ENCODER_FILE
    from cp_debug.quant.ptq_checkpoint import read_ptq_dir as read_dir

    return read_dir(path, (VOXEL_ENCODER_FILE, BACKBONE_FILE))


def fakequant_model_from_dir(path: str | Path, cfg) -> tuple[PtqDir, Any]:
    """(PtqDir, fake-quant CenterPoint) of a PTQ directory written for preset `cfg` - the one call a
    torch-*-int8 backend needs; the ORT lanes take `PtqDir.graphs` as they are."""
    ptq = read_ptq_dir(path)
    if ptq.preset and ptq.preset != cfg.name:
        raise CheckpointError(f"{ptq.root} was quantized for preset {ptq.preset!r}, not {cfg.name!r}: pass --preset "
                              f"{ptq.preset}")
    return ptq, build_fakequant_model(cfg, load_ptq_checkpoint(ptq.checkpoint, cfg))
