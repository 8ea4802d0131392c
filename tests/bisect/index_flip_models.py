"""Index flips issue 108 found named without a reason: a floor division made a position (Llama-style) and a nearest
upsample at a non-integer scale (YOLO-style), each with a value a hair from its boundary in float16."""

import torch
from torch import nn
import torch.nn.functional as F


class FloorPositions(nn.Module):
    """Positions from a float (a time step, a token's offset): `torch.div(t, 4, rounding_mode='floor')` picks a
    position embedding row, added to a Linear's output (a Llama-style model's position ids made of a float)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.pos = nn.Embedding(8, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        h = self.lin(x)
        pos = torch.div(h[..., 0] * 4, 4, rounding_mode="floor")
        return self.head(self.pos(pos.clamp(0, 7).long()) + h)


def build_floor_div(value: float = 2.99997):
    """Token 3's first channel at `value` (2.99997: float16 stores 3.0, whose floor is 3, not 2)."""
    torch.manual_seed(0)
    net = FloorPositions().eval()
    x = torch.randn(1, 8, 8)
    with torch.no_grad():
        net.lin.bias[0] += value - net.lin(x)[0, 3, 0]
    return net, (x,)


class Upsampled(nn.Module):
    """A YOLO-style neck: a map upsampled (nearest) by 1.2 onto a finer one and concatenated."""

    def __init__(self, scale: float = 1.2):
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(4, 4, 1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, coarse, fine):
        up = F.interpolate(self.conv(coarse), scale_factor=self.scale, mode="nearest")
        return self.head(torch.cat([up, fine], 1))


def build_upsample(scale: float = 1.2):
    torch.manual_seed(0)
    return Upsampled(scale).eval(), (torch.randn(1, 4, 10, 10), torch.randn(1, 4, 12, 12))


class PositionsInside(nn.Module):
    """`FloorPositions` with the Linear and the floor division inside one module (`attn`, a Llama-style attention
    computing its positions from its own projection): no probe between them."""

    def __init__(self):
        super().__init__()
        self.attn = FloorPositions()
        self.head = nn.Linear(4, 4)

    def forward(self, x):
        return self.head(self.attn(x))


def build_floor_div_inside(value: float = 2.99997):
    torch.manual_seed(0)
    net = PositionsInside().eval()
    x = torch.randn(1, 8, 8)
    with torch.no_grad():
        lin = net.attn.lin
        lin.bias[0] += value - lin(x)[0, 3, 0]
    return net, (x,)
