"""Models whose output rests on an index made of a float: one value planted a hair below an integer (2.99997, which
float16 stores as 3.0) or one grid coordinate a hair past a half-integer (2.5001, 2.5 in float16), and twins with
the same value well away from the boundary (2.5; 2.6)."""

import torch
from torch import nn
import torch.nn.functional as F


def _set(linear_out: torch.Tensor, bias: torch.Tensor, channel: int, value: float) -> None:
    """Shift `bias[channel]` so that `linear_out` (that channel's output at the planted element) becomes `value`."""
    bias[channel] += value - linear_out


class CastIndex(nn.Module):
    """A Linear's first channel truncated to an index (`.long()`, a Cast to int64) that picks an embedding row."""

    def __init__(self, floor: bool = False):
        super().__init__()
        self.floor = floor
        self.lin = nn.Linear(8, 4)
        self.emb = nn.Embedding(8, 4)
        self.head = nn.Linear(4, 4)

    def forward(self, x):
        h = self.lin(x)
        v = h[..., 0] * 2 // 2 if self.floor else h[..., 0]  # `//` on floats: Div + Floor
        return self.head(self.emb(v.clamp(0, 7).long()) + h)


def build_cast(value: float = 2.99997, floor: bool = False):
    torch.manual_seed(0)
    net = CastIndex(floor).eval()
    x = torch.randn(1, 8, 8)
    with torch.no_grad():
        _set(net.lin(x)[0, 3, 0], net.lin.bias, 0, value)
    return net, (x,)


def build_cast_far():
    return build_cast(2.5)


def build_floor():
    return build_cast(floor=True)


class Snap(nn.Module):
    """A Linear's output snapped to quarters (`torch.round(h * 4) / 4`, as a fake quantizer or a coordinate snapped to
    a grid does): the Round computes in float16 with the model, so the segment after the Linear rounds by itself."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 4)
        self.head = nn.Linear(4, 4)

    def forward(self, x):
        return self.head(torch.round(self.lin(x) * 4) / 4)


def build_round(value: float = 3.49995):
    """One Linear output at 3.49995 / 4 (0.87499): float16 stores 0.875, whose quarter 3.5 rounds (half to even)
    to 4, not 3."""
    torch.manual_seed(0)
    net = Snap().eval()
    x = torch.randn(1, 8, 8)
    with torch.no_grad():
        _set(net.lin(x)[0, 3, 0], net.lin.bias, 0, value / 4)
    return net, (x,)


def build_round_far():
    return build_round(3.2)


class GridWarp(nn.Module):
    """Features sampled at coordinates a Linear predicts (grid_sample, nearest): a coordinate rounded in float16."""

    def __init__(self):
        super().__init__()
        self.feat = nn.Conv2d(3, 4, 3, padding=1)
        self.offset = nn.Linear(6, 2)
        self.head = nn.Conv2d(4, 4, 1)

    def forward(self, x, tokens):
        grid = self.offset(tokens).reshape(1, 4, 4, 2)
        return self.head(F.grid_sample(self.feat(x), grid, mode="nearest", align_corners=False))


def build_grid(coord: float = 2.5001):
    """Pixel 5's x coordinate at `coord` on an 8-wide map: grid value (coord - 3.5) / 4 (-0.249975: float16's -0.25
    puts it on the half-integer 2.5, which rounds to 2)."""
    torch.manual_seed(0)
    net = GridWarp().eval()
    x, tokens = torch.randn(1, 3, 8, 8), torch.randn(1, 16, 6) * 0.5
    with torch.no_grad():
        _set(net.offset(tokens)[0, 5, 0], net.offset.bias, 0, (coord - 3.5) / 4)
    return net, (x, tokens)


def build_grid_far():
    return build_grid(2.8)


class Fpn(nn.Module):
    """torchvision's FeaturePyramidNetwork: its top map upsampled 5 → 9 (nearest, a non-integer ratio) onto the
    finer one."""

    def __init__(self):
        super().__init__()
        from torchvision.ops import FeaturePyramidNetwork

        self.fpn = FeaturePyramidNetwork([8, 16], 8)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, c2, c3):
        return self.head(self.fpn({"c2": c2, "c3": c3})["c2"])


def build_fpn():
    torch.manual_seed(0)
    return Fpn().eval(), (torch.randn(1, 8, 9, 9), torch.randn(1, 16, 5, 5))


class RoiLevels(nn.Module):
    """A two-stage detector's RoI head: proposals decoded as anchors + deltas, then torchvision's FPN level mapper
    (MultiScaleRoIAlign's `floor(4 + log2(sqrt(area) / 224))`, then `.to(torch.int64)`) picks a per-level
    embedding for each box."""

    def __init__(self, sides):
        super().__init__()
        from torchvision.ops.poolers import initLevelMapper

        self.mapper = initLevelMapper(2, 5)
        self.register_buffer("anchors", torch.stack([torch.zeros(6), torch.zeros(6), sides, sides], 1))
        self.box_embed = nn.Linear(4, 8)
        self.levels = nn.Embedding(4, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, deltas):
        boxes = self.anchors + deltas
        return self.head(self.box_embed(boxes / 448) + self.levels(self.mapper([boxes])))


def build_levels(side: float = 448.0):
    """Six anchors at the origin, one `side` wide and high, its proposal 0.01 smaller: 447.99 maps to level 4
    (4.99997), float16's 448.0 (the step there 0.25) to level 5."""
    torch.manual_seed(0)
    net = RoiLevels(torch.tensor([60.0, 150.0, 300.0, side, 700.0, 90.0])).eval()
    deltas = torch.zeros(6, 4)
    deltas[:, 2:] = -0.01
    return net, (deltas,)


def build_levels_far():
    return build_levels(430.0)
