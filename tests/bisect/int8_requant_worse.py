"""A planted INT8 case where a re-quantization passes its segment and leaves the outputs worse (issue 115, item 1):
the stem's channel 0 ×300 sets the per-tensor INT8 range of the stem's output (±535), 88% of the other channels'
values round to zero where `body.0` reads them, and `body.0` reads channel 0 itself barely (×1e-3). The range rung
(the stem's output re-quantized at the other channels' |x| max, ±2.3: channel 0 saturates) is within INT8's budget on
`body.0`'s segment, but the output adds channel 0 itself (`0.05 · s[:, :1]`), which the saturation wrecks."""

from __future__ import annotations

import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.Conv2d(8, 8, 3, padding=1))
        self.head = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x):
        s = self.stem(x)
        return self.head(self.body(s)) + s[:, :1] * 0.05


def build():
    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        net.stem.weight[0] *= 300
        net.stem.bias[0] = 0
        net.body[0].weight[:, 0] *= 1e-3
    return net, (torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)),)
