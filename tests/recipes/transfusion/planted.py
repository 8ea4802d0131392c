"""Tiny TransFusion-L checkpoints (AWML keys) with an FP16 fault planted and FP32 healthy: the decoder's
cross-attention logits beyond 65504, or a backbone block's activations beyond it with its output unchanged."""

from __future__ import annotations

ATTENTION = "pts_bbox_head.decoder.0.cross_attn"
BACKBONE = "pts_backbone.blocks.1"


def planted_checkpoint(path, fault: str, seed: int = 0):
    """Write transfusion-tiny's seeded weights with `fault` planted, and return the path:
    - "attention": decoder.0's cross-attention, head 0's first query and key channel made the constant 640 (in_proj
      rows zeroed, biases 640): every QK^T logit of that head gains 640 x 640 / sqrt(16) = 102400, the same for every
      key, which the softmax ignores in FP32 and float16 cannot hold (the head loses that one channel's term);
    - "backbone": pts_backbone.blocks.1's first BatchNorm (weight, bias) x 3e4 and the next conv's weights / 3e4:
      the ReLU between holds values near 2e5, and the block's output is what it was in FP32."""
    import torch

    from cp_debug.pickles import save_checkpoint
    from cp_debug.recipes.transfusion.source import load_transfusion

    model = load_transfusion("transfusion-tiny", None, seed).model
    with torch.no_grad():
        if fault == "attention":
            attn = model.pts_bbox_head.decoder[0].cross_attn.attn
            d = attn.embed_dim
            for row in (0, d):  # q's and k's channel 0 (head 0)
                attn.in_proj_weight[row] = 0.0
                attn.in_proj_bias[row] = 640.0
        elif fault == "backbone":
            block = model.pts_backbone.blocks[1]
            block[1].weight.mul_(3e4)
            block[1].bias.mul_(3e4)
            block[3].weight.div_(3e4)
        else:
            raise ValueError(f"unknown fault {fault!r}")
    return save_checkpoint(model, path)


def bisect_planted(tmp_path, fault: str) -> dict:
    """`cpdebug bisect --recipe transfusion --checkpoint` of `fault`'s planted checkpoint on the first 800 points
    of the synthetic scan (seed 0), torch against ort-cpu-fp16: the JSON report (exit 1 asserted)."""
    import json

    import numpy as np

    from cp_debug.lidar.synthetic import synthetic_scene
    from cp_debug.models.transfusion.presets import get_preset
    from tests.cli_run import cpdebug

    points = tmp_path / "scan.bin"
    synthetic_scene(0, get_preset("transfusion-tiny")).points[:800].astype(np.float32).tofile(points)
    ckpt = planted_checkpoint(tmp_path / "planted.pth", fault)
    res = cpdebug("bisect", "--recipe", "transfusion", "--preset", "transfusion-tiny", "--checkpoint", ckpt,
                  "--backends", "torch,ort-cpu-fp16", "--points", points, "--no-noise-floor", "--json", "-")
    assert res.returncode == 1, res.stderr[-2000:]
    return json.loads(res.stdout)
