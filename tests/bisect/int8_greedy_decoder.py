"""Issue 115, item 2: a greedy decoder unrolled in its graph, as g2p_en's is (a GRU cell over 8 steps, each step's
`ArgMax` over the logits picking the token the next step's embedding `Gather` reads). Random weights (the output
layer's ×3: logits a few units apart), six rows: INT8's rounding of the logits moves a near tie apart at some step,
the token flips and the decoder runs on another path from there."""

from __future__ import annotations

import torch
from torch import nn

VOCAB, HIDDEN, STEPS, ROWS = 10, 16, 8, 6


class GreedyDecoder(nn.Module):
    def __init__(self, topk: bool = False):
        super().__init__()
        self.topk = topk  # the choice written as TopK(k=1), as some exporters write an argmax
        self.enc = nn.Linear(5, HIDDEN)
        self.emb = nn.Embedding(VOCAB, HIDDEN)
        self.cell = nn.GRUCell(HIDDEN, HIDDEN)
        self.out = nn.Linear(HIDDEN, VOCAB)

    def forward(self, x):
        h = torch.tanh(self.enc(x))
        tok = torch.zeros(x.shape[0], dtype=torch.long)
        steps = []
        for _ in range(STEPS):  # the next token: the argmax of this step's logits
            h = self.cell(self.emb(tok), h)
            steps.append(self.out(h))
            tok = steps[-1].topk(1, -1)[1][:, 0] if self.topk else steps[-1].argmax(-1)
        return torch.stack(steps, 1)


def build(topk: bool = False):
    torch.manual_seed(0)
    net = GreedyDecoder(topk).eval()
    with torch.no_grad():
        net.out.weight.mul_(3.0)
    return net, (torch.randn(ROWS, 5, generator=torch.Generator().manual_seed(100)),)


def build_topk():
    return build(topk=True)
