"""A model whose output rests on a decision: per-token scores, the top 4 tokens kept (TopK), their projections
gathered and classified — with the 4th and 5th scores a chosen gap apart (`build`: 2e-5, inside float16's step of
2.4e-4 at 0.49; `build_wide`: 0.05)."""

import torch
from torch import nn


class _Scored(nn.Module):
    """Per-token scores of `scored` channels, a projection of the 16 channels, a head."""

    def __init__(self, scored: int, head: tuple[int, int]):
        super().__init__()
        self.score = nn.Linear(scored, 1)
        self.proj = nn.Linear(16, 16)
        self.head = nn.Linear(*head)


class Select(_Scored):
    """Per-token scores, the top 4 tokens kept (TopK), their projections gathered and classified."""

    def __init__(self):
        super().__init__(16, (64, 8))

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


class Queries(nn.Module):
    """DETR's shape in small: per-token scores (channel 0 of each token, read by a Linear), the top 5 tokens kept
    (TopK), their projections gathered as queries, a decoder layer per query, class logits and boxes per query — the
    outputs are sets of 5 rows."""

    def __init__(self):
        super().__init__()
        self.score = nn.Linear(8, 1)
        self.proj = nn.Linear(16, 16)
        self.decoder = nn.Linear(16, 16)
        self.cls = nn.Linear(16, 3)
        self.box = nn.Linear(16, 4)

    def forward(self, x):
        s = self.score(x[..., :8]).squeeze(-1)
        idx = torch.topk(s, 5, dim=1).indices
        q = torch.gather(self.proj(x), 1, idx.unsqueeze(-1).expand(-1, -1, 16))
        h = torch.relu(self.decoder(q))
        return self.cls(h), self.box(h).sigmoid()


def _queries(rank: int, gap: float):
    """Queries whose token scores are 32 float16 values 1/16 apart (channel 0, read exactly: weight 1, bias 0), the
    token at `rank` (0: the best) given a twin of a higher index scoring `gap` above it: float16 rounds both to the
    same score, and its TopK takes the lower index first (as ONNX says), the reference the twin."""
    torch.manual_seed(0)
    net = Queries().eval()
    with torch.no_grad():
        net.score.weight.zero_()
        net.score.weight[0, 0] = 1.0
        net.score.bias.zero_()
    x = torch.randn(1, 32, 16)
    order = torch.randperm(32, generator=torch.Generator().manual_seed(1))
    x[0, order, 0] = 1 + torch.arange(32, 0, -1, dtype=torch.float32) / 32  # float16-exact, 1/32 apart in [1, 2)
    ranked = sorted(range(32), key=lambda t: -float(x[0, t, 0]))
    low = ranked[rank]
    high = next(t for t in ranked[rank + 6:] if t > low)  # a token far down the ranking, of a higher index
    x[0, high, 0] = x[0, low, 0] + gap  # within float16's half step (4.9e-4 in [1, 2)): the same float16 score
    return net, (x,)


def build_order(gap: float = 1e-4):
    """The twins at ranks 2 and 3: the candidate chooses the same five, two of them in the other order."""
    return _queries(1, gap)


def build_cut(gap: float = 1e-4):
    """The twins at ranks 5 and 6, the cut: the candidate keeps the lower index and leaves the twin out."""
    return _queries(4, gap)


def build_queries_wide():
    """The same model with the twin 0.25 above: no tie, the same choice."""
    return _queries(4, 0.25)


class Gate(_Scored):
    """Per-token scores (channel 0, read exactly), a score threshold (s > 0.5) gating each token's projection
    (Where), a head per token."""

    def __init__(self):
        super().__init__(8, (16, 4))

    def forward(self, x):
        s = self.score(x[..., :8]).squeeze(-1)
        return self.head(torch.where((s > 0.5)[..., None], self.proj(x), torch.zeros(())))


def _exact_scores(net) -> None:
    """The score Linear reads channel 0 as it is (weight 1, bias 0): float16 rounds the score as it rounds the input."""
    with torch.no_grad():
        net.score.weight.zero_()
        net.score.weight[0, 0] = 1.0
        net.score.bias.zero_()


def build_gate(above: float = 1e-4):
    """32 tokens, channel 0 float16-exact and at least 0.1 from the threshold, one token `above` it: 0.5 + 1e-4,
    which float16 rounds to 0.5 (its step there 4.9e-4), so the candidate's s > 0.5 is false where FP32's is true."""
    torch.manual_seed(0)
    net = Gate().eval()
    _exact_scores(net)
    x = torch.randn(1, 32, 16)
    x[0, :, 0] = torch.tensor([0.25, 0.375, 0.625, 0.75] * 8)
    x[0, 5, 0] = 0.5 + above
    return net, (x,)


def build_gate_wide():
    return build_gate(0.05)


class Suppress(_Scored):
    """Boxes and scores per token (read from the input through identity Linears: float16 rounds them as it rounds the
    input), torchvision's NMS at IoU 0.5, the kept tokens' projections through a head, their boxes and scores."""

    def __init__(self):
        super().__init__(8, (16, 4))
        self.box = nn.Linear(4, 4)
        with torch.no_grad():
            self.box.weight.copy_(torch.eye(4))
            self.box.bias.zero_()
        _exact_scores(self)

    def forward(self, x):
        import torchvision

        boxes, scores = self.box(x[:, 8:12]), self.score(x[:, :8]).squeeze(-1)
        keep = torchvision.ops.nms(boxes, scores, 0.5)
        return self.head(self.proj(x)[keep]), boxes[keep], scores[keep]


def build_nms(over: float = 1e-4):
    """12 boxes on a grid, apart, scores 1/16 apart; box 7 nested in box 2 (lower score) with IoU 0.5 + `over`: FP32
    suppresses it, float16 rounds its height 0.5 + 1e-4 to 0.5 (IoU 0.5, not above) and keeps it."""
    torch.manual_seed(0)
    net = Suppress().eval()
    x = torch.randn(12, 16)
    x[:, 0] = 1 - torch.arange(12, dtype=torch.float32) / 16
    for t in range(12):
        x[t, 8:12] = torch.tensor([4.0 * t, 0.0, 4.0 * t + 1, 1.0])
    x[7, 8:12] = torch.tensor([8.0, 0.0, 9.0, 0.5 + over])  # inside box 2 ([8, 0, 9, 1]): IoU = its height
    return net, (x,)


def build_nms_wide():
    return build_nms(0.1)


class Best(_Scored):
    """Per-token scores (channel 0, read exactly), the best token of each row (ArgMax, its axis dropped), its
    projection through a head."""

    def __init__(self):
        super().__init__(8, (16, 4))

    def forward(self, x):
        best = torch.argmax(self.score(x[..., :8]).squeeze(-1), dim=1)
        return self.head(self.proj(x)[torch.arange(x.shape[0]), best])


def build_argmax():
    """Two rows of 16 tokens scored 1 … 1.9; in row 0, token 15 at 1.9 + 1e-4 above token 3 at 1.9: float16 rounds
    both to 1.9004, and its ArgMax takes the lower index."""
    torch.manual_seed(0)
    net = Best().eval()
    _exact_scores(net)
    x = torch.randn(2, 16, 16)
    x[:, :, 0] = torch.linspace(1, 1.9, 16)
    x[0, 3, 0], x[0, 15, 0] = 1.9, 1.9 + 1e-4
    return net, (x,)
