"""Small networks for deployed files the real FP16 converters write, as `FUNC() -> (module, example_inputs)` for
`--torch FILE:FUNC` (issue 107, item 4).

`pooled`: token embeddings, a Linear and a mean over the tokens a mask keeps, as sentence encoders pool a BERT's
output — the mask made float by a Cast(to=float), which onnxconverter-common and polygraphy's `--fp-to-fp16` leave
writing float32 into a graph they made float16: ONNX Runtime refuses the file they write. `clamped`: the same
without the mask, its Linear holding 12 weights of 3.1e4 (past the converters' ±1e4 clamp) and 5 of 3e-9 (below
their 1e-7 floor)."""

from __future__ import annotations

import torch
from torch import nn

TOKENS = 16


class Pooled(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.dense = nn.Linear(16, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, ids, mask):
        h = torch.relu(self.dense(self.embed(ids)))
        m = mask.unsqueeze(-1).float()
        return self.head((h * m).sum(1) / m.sum(1))


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.dense = nn.Linear(16, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, ids):
        return self.head(torch.relu(self.dense(self.embed(ids))).mean(1))


def _ids() -> torch.Tensor:
    return torch.randint(0, 50, (1, TOKENS), generator=torch.Generator().manual_seed(0))


def pooled():
    torch.manual_seed(0)
    return Pooled().eval(), (_ids(), torch.ones(1, TOKENS, dtype=torch.int64))


def clamped():
    torch.manual_seed(0)
    net = Encoder().eval()
    with torch.no_grad():
        net.dense.weight[0, :12] = 3.1e4
        net.dense.weight[1, :5] = 3e-9
    return net, (_ids(),)
