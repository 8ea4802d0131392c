"""natasha's Russian dependency parser (natasha 1.6.0 with slovnet 0.6.0 and navec 0.10.0, MIT: `natasha/data/model/
slovnet_syntax_news_v1.tar`, 2.5 MB, with the navec embeddings of natasha's 34 MB wheel): slovnet runs a PyTorch
model's packed arrays in numpy (`slovnet.exec.model.Syntax`). The NER's encoder (navec's product-quantized lookup
beside a word-shape embedding, three Conv1d + ReLU + BatchNorm; `natasha_ner.encoder`), then two biaffine heads:
the arcs — a learned root vector put before the words, two ReLU feed-forwards (head, tail), `head @ kernel @ tailᵀ`:
each word's score for every head candidate (the root and the words) — and, for each word's head **chosen by argmax
inside the network** (slovnet's `SyntaxHead.decode`, then `gather_head`), the relation's 45 labels' scores by a
second biaffine. Ported here to torch as slovnet's arrays say (`model()`; one sentence a batch, so the pad mask is
empty), checked equal to slovnet's numpy on every sentence (`tests/trained/test_natasha_syntax.py`).

    pip install --no-deps natasha==1.6.0 slovnet==0.6.0 navec==0.10.0 razdel==0.5.0   # their files only

Decision (`las_metric`): the labelled attachment score against the reference — the share of words whose head (the
arcs' argmax, as `SyntaxInfer` decodes it) and relation label (the argmax of the relation scores) are both the
reference's. Samples (`feeds()`): natasha_ner's Russian news sentences, encoded by slovnet's own `SyntaxEncoder`;
`CALIB` the even ones."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from tests.trained.corpus import wheel_file
from tests.trained.natasha_ner import CALIB, NAVEC_TAR, SENTENCES, encoder, linear

SYNTAX_TAR = "natasha/data/model/slovnet_syntax_news_v1.tar"
__all__ = ["CALIB", "SENTENCES", "feeds", "las_metric", "model", "numpy_parse"]


@lru_cache(maxsize=1)
def slovnet_syntax():
    """slovnet's own syntax parser (numpy) with natasha's navec injected: `api.Syntax`."""
    from navec import Navec
    from slovnet import Syntax

    return Syntax.load(wheel_file("natasha", SYNTAX_TAR)).navec(Navec.load(wheel_file("natasha", NAVEC_TAR)))


def feeds() -> list[dict[str, np.ndarray]]:
    """Each sentence's `word_id` and `shape_id` (1, words), as slovnet's `SyntaxEncoder` encodes them."""
    from slovnet.exec.infer import text_words

    parser, out = slovnet_syntax(), []
    for s in SENTENCES:
        batch = next(iter(parser.infer.encoder([text_words(s)])))
        out.append({"word_id": np.asarray(batch.word_id, np.int64), "shape_id": np.asarray(batch.shape_id, np.int64)})
    return out


def numpy_parse(feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """slovnet's numpy parse of one feed: each word's head (0 the root) and relation id, as `SyntaxInfer` decodes."""
    infer = slovnet_syntax().infer
    pad = np.zeros(feed["word_id"].shape, bool)
    pred = infer.model(feed["word_id"], feed["shape_id"], pad)
    return infer.model.head.decode(pred.head_id, ~pad)[0], infer.model.rel.decode(pred.rel_id, ~pad)[0]


def model():
    """slovnet's syntax network in torch, with natasha's weights, in eval mode: (word_id, shape_id) → (arcs (1,
    words, words + 1), rels (1, words, 45)), the relations scored for each word's argmax head."""
    import torch
    from torch import nn

    net = slovnet_syntax().infer.model

    def feed_forward(ff):
        return nn.Sequential(linear(ff.proj), nn.ReLU())

    class Biaffine(nn.Module):
        def __init__(self, part):
            super().__init__()
            self.head, self.tail = feed_forward(part.head), feed_forward(part.tail)
            self.root = nn.Parameter(torch.from_numpy(np.array(part.root.array)).reshape(1, 1, -1))
            self.kernel = nn.Parameter(torch.from_numpy(np.array(part.kernel.array)))

        def rooted(self, x):
            return torch.cat([self.root.expand(x.shape[0], 1, -1), x], 1)

    class Arcs(Biaffine):
        def forward(self, x):
            x = self.rooted(x)
            scores = self.head(x) @ self.kernel @ self.tail(x).transpose(1, 2)
            return scores[:, 1:]

    class Rels(Biaffine):
        def forward(self, x, head_id):
            rooted = self.rooted(x)  # a word's head: 0 the root, i the i-th word
            head = self.head(rooted[torch.arange(x.shape[0])[:, None], head_id])
            tail = self.tail(x)
            hidden = tail.shape[-1]
            y = (head @ self.kernel).reshape(*x.shape[:2], -1, hidden)
            return (y @ tail.unsqueeze(-1)).squeeze(-1)

    class Parser(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder(net)
            self.arcs, self.rels = Arcs(net.head), Rels(net.rel)

        def forward(self, word_id, shape_id):
            x = self.encoder(word_id, shape_id)
            arcs = self.arcs(x)
            return arcs, self.rels(x, arcs.argmax(-1))

    return Parser().eval()


def parse(outputs) -> tuple[np.ndarray, np.ndarray]:
    """Each word's head and relation from the outputs (arcs, rels) of one sentence, by name order."""
    arcs, rels = (np.asarray(v) for v in outputs.values())
    return arcs[0].argmax(-1), rels[0].argmax(-1)


def las_metric(outputs, reference, label=None) -> float:
    """The labelled attachment score: the share of words whose head and relation are both the reference's."""
    (head, rel), (ref_head, ref_rel) = parse(outputs), parse(reference)
    return float(np.mean((head == ref_head) & (rel == ref_rel)))
