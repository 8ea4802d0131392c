"""A model whose output rests on a decision: per-token scores, the top 4 tokens kept (TopK), their projections
gathered and classified — with the 4th and 5th scores a chosen gap apart (`build`: 2e-5, inside float16's step of
2.4e-4 at 0.49; `build_wide`: 0.05)."""

import torch
from torch import nn


class Select(nn.Module):
    """Per-token scores, the top 4 tokens kept (TopK), their projections gathered and classified."""

    def __init__(self):
        super().__init__()
        self.score = nn.Linear(16, 1)
        self.proj = nn.Linear(16, 16)
        self.head = nn.Linear(64, 8)

    def forward(self, x):
        s = self.score(x).squeeze(-1)
        idx = torch.topk(s, 4, dim=1).indices
        feats = torch.gather(self.proj(x), 1, idx.unsqueeze(-1).expand(-1, -1, 16))
        return self.head(feats.flatten(1))


def build(gap: float = 2e-5):
    """The near tie."""
    torch.manual_seed(0)
    net = Select().eval()
    x = torch.randn(1, 32, 16)
    with torch.no_grad():
        s = net.score(x).squeeze(-1)[0]
        order = torch.argsort(s, descending=True)
        fourth, fifth = order[3], order[4]
        # move the fifth token's score to just below the fourth's: a near tie at the cut
        w = net.score.weight[0]
        x[0, fifth] += w * ((s[fourth] - s[fifth] - gap) / (w @ w))
    return net, (x,)


def build_wide():
    return build(gap=0.05)
