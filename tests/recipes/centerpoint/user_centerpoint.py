"""A model factory in another style than cp_debug's: the `tiny` preset's CenterPoint written as a team might write
its own — other module trees and names, BatchNorm folded into the convs (fused blocks), the backbone as Sequential
levels, the neck as `lift`, the head as one ModuleDict — with cp_debug's weights loaded by an explicit mapping.
`cpdebug bisect --model-factory tests/recipes/centerpoint/user_centerpoint.py:build` runs it as the reference.

The broken factories below each break one part of the contract (models/centerpoint/factory.py)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from cp_debug.models.centerpoint.factory import UserCenterPoint

HEADS = ("heatmap", "reg", "height", "dim", "rot", "vel")
SEED = 3  # cp_debug's tiny model of this seed is the one mapped in


class PointMLP(nn.Module):
    """Linear (no bias) -> BatchNorm over channels -> ReLU, on (N, P, C): one PFN layer without its max."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.fc = nn.Linear(cin, cout, bias=False)
        self.norm = nn.BatchNorm1d(cout, eps=1e-3)

    def forward(self, x):
        return torch.relu(self.norm(self.fc(x).transpose(1, 2)).transpose(1, 2))


class PillarNet(nn.Module):
    """Two point MLPs with the pillar max between them, concatenated back (expand, not repeat)."""

    def __init__(self, cin: int = 10):
        super().__init__()
        self.expand = PointMLP(cin, 16)
        self.squeeze = PointMLP(32, 32)

    def forward(self, points):
        h = self.expand(points)
        h = torch.cat([h, h.amax(dim=1, keepdim=True).expand_as(h)], dim=2)
        return self.squeeze(h).amax(dim=1, keepdim=True)


class Fused(nn.Module):
    """Conv (with the BatchNorm folded into its weight and bias) -> ReLU."""

    def __init__(self, cin, cout, k, stride=1, transpose=False):
        super().__init__()
        conv = nn.ConvTranspose2d if transpose else nn.Conv2d
        self.op = conv(cin, cout, k, stride=stride, padding=0 if transpose or k == stride else k // 2, bias=True)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.op(x))


class BevDetector(nn.Module):
    """Backbone levels (Sequential), neck `lift`, head `trunk` + one ModuleDict of heads: the six raw maps."""

    def __init__(self):
        super().__init__()
        widths, depths, strides = (64, 128, 256), (3, 5, 5), (1, 2, 2)
        levels, cin = [], 32
        for w, d, s in zip(widths, depths, strides):
            blocks = [("entry", Fused(cin, w, 3, stride=s))] + [(f"conv{j}", Fused(w, w, 3)) for j in range(d)]
            levels.append(nn.Sequential(OrderedDict(blocks)))
            cin = w
        self.levels = nn.ModuleList(levels)
        self.lift = nn.ModuleList([Fused(64, 128, 2, stride=2), Fused(128, 128, 1),
                                   Fused(256, 128, 2, stride=2, transpose=True)])
        self.trunk = Fused(384, 64, 3)
        channels = {"heatmap": 5, "reg": 2, "height": 1, "dim": 3, "rot": 2, "vel": 2}
        self.heads = nn.ModuleDict({k: nn.Sequential(Fused(64, 64, 1), nn.Conv2d(64, c, 1))
                                    for k, c in channels.items()})

    def forward(self, bev):
        feats, x = [], bev
        for level in self.levels:
            x = level(x)
            feats.append(x)
        x = self.trunk(torch.cat([lift(f) for lift, f in zip(self.lift, feats)], dim=1))
        return tuple(self.heads[k](x) for k in HEADS)


def _fold(conv, bn, into):
    """`into.op` = conv with bn folded (conv has no bias; a ConvTranspose2d's output channels are dim 1)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shape = (1, -1, 1, 1) if isinstance(conv, nn.ConvTranspose2d) else (-1, 1, 1, 1)
    into.op.weight.copy_(conv.weight * scale.reshape(shape))
    into.op.bias.copy_(bn.bias - bn.running_mean * scale)


def _mlp(src, dst: PointMLP):
    dst.fc.weight.copy_(src.linear.weight)
    dst.norm.load_state_dict(src.norm.state_dict())


@torch.no_grad()
def load_from_cp_debug(model, encoder: PillarNet, detector: BevDetector) -> None:
    """cp_debug's CenterPoint weights into these modules, key by key (the explicit mapping)."""
    pfn = model.pts_voxel_encoder.pfn_layers
    _mlp(pfn[0], encoder.expand)
    _mlp(pfn[1], encoder.squeeze)
    for level, block in zip(detector.levels, model.pts_backbone.blocks):
        for k, fused in enumerate(level):
            _fold(block[3 * k], block[3 * k + 1], fused)
    for fused, deblock in zip(detector.lift, model.pts_neck.deblocks):
        _fold(deblock[0], deblock[1], fused)
    shared = model.pts_bbox_head.shared_conv
    _fold(shared.conv, shared.bn, detector.trunk)
    task = model.pts_bbox_head.task_heads[0]
    for name, seq in detector.heads.items():
        theirs = getattr(task, name)
        _fold(theirs[0].conv, theirs[0].bn, seq[0])
        seq[1].load_state_dict(theirs[1].state_dict())


def cp_debug_model():
    from cp_debug.models.centerpoint.model import build_model
    from cp_debug.models.centerpoint.presets import get_preset

    return build_model(get_preset("tiny"), seed=SEED)


def build() -> UserCenterPoint:
    encoder, detector = PillarNet(), BevDetector()
    load_from_cp_debug(cp_debug_model(), encoder, detector)
    return UserCenterPoint(encoder.eval(), detector.eval(), config="tiny", name="user-tiny",
                           weights=f"cp_debug's tiny model (seed {SEED}), mapped")


# -- factories that break the contract, one part each ---------------------------------------------------------
class DictHead(nn.Module):
    def __init__(self, detector):
        super().__init__()
        self.detector = detector

    def forward(self, bev):
        return dict(zip(HEADS, self.detector(bev)))


class PairEncoder(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, points):
        out = self.encoder(points)
        return out, out.mean()


class Unexportable(nn.Module):
    """Runs in PyTorch, but a running max (aten::cummax) has no ONNX export at opset 17."""

    def __init__(self, detector):
        super().__init__()
        self.detector = detector

    def forward(self, bev):
        maps = self.detector(bev)
        return (torch.cummax(maps[0], dim=3)[0],) + maps[1:]


def dict_head() -> UserCenterPoint:
    return UserCenterPoint(PillarNet(), DictHead(BevDetector()), config="tiny")


def pair_encoder() -> UserCenterPoint:
    return UserCenterPoint(PairEncoder(PillarNet()), BevDetector(), config="tiny")


def wrong_classes() -> UserCenterPoint:
    """Settings of three classes for a head of five."""
    from cp_debug.models.centerpoint.presets import get_preset

    return UserCenterPoint(PillarNet(), BevDetector(), config=get_preset("tiny").with_(class_names=("car", "truck",
                                                                                                       "bus")))


def unexportable() -> UserCenterPoint:
    return UserCenterPoint(PillarNet(), Unexportable(BevDetector()), config="tiny")
