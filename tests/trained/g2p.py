"""g2p_en 2.1.0 (a 3.1 MB wheel, Apache-2.0): its `checkpoint20.npz` — a 256-wide GRU encoder over letters and a GRU
decoder over 74 phonemes, which g2p_en runs in numpy — rebuilt in torch as users deploy it: `nn.GRU` encoder,
`nn.GRUCell` decoder unrolled over 20 greedy steps, each step's `ArgMax` fed back through the phoneme embedding
(docs/trained-models.md, "langid and g2p_en"). Decision: each word's phonemes up to `</s>` (`words_metric`).

    pip install --no-deps g2p-en   # its wheel's checkpoint; torch as installed"""

from __future__ import annotations

import numpy as np

GRAPHEMES = ["<pad>", "<unk>", "</s>"] + list("abcdefghijklmnopqrstuvwxyz")
STEPS, END = 20, 3  # greedy steps; the phoneme `</s>`
WORDS = ("network exposed quantum billion chatbot pianist whisker roaming morning glimmer bristle caption stardom "
         "plumber yelping zealous juggler voyages fixture hexagon oxidize quarter twinkle vibrant").split()


def g2p_module():
    """(the decoder as a torch module, the 12 judged words' letters): `--torch` reads it."""
    import torch
    from torch import nn

    from tests.trained.corpus import wheel_file

    v = np.load(wheel_file("g2p-en", "g2p_en/checkpoint20.npz"))

    def t(k):
        return torch.from_numpy(v[k].copy())

    class G2P(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc_emb = nn.Embedding.from_pretrained(t("enc_emb"))
            self.enc = nn.GRU(256, 256, batch_first=True)
            self.dec_emb = nn.Embedding.from_pretrained(t("dec_emb"))
            self.dec = nn.GRUCell(256, 256)
            self.fc = nn.Linear(256, 74)
            with torch.no_grad():
                for mine, k in (("weight_ih_l0", "enc_w_ih"), ("weight_hh_l0", "enc_w_hh"), ("bias_ih_l0", "enc_b_ih"),
                                ("bias_hh_l0", "enc_b_hh")):
                    getattr(self.enc, mine).copy_(t(k))
                for mine, k in (("weight_ih", "dec_w_ih"), ("weight_hh", "dec_w_hh"), ("bias_ih", "dec_b_ih"),
                                ("bias_hh", "dec_b_hh")):
                    getattr(self.dec, mine).copy_(t(k))
                self.fc.weight.copy_(t("fc_w"))
                self.fc.bias.copy_(t("fc_b"))

        def forward(self, chars):
            _, h = self.enc(self.enc_emb(chars))
            h, tok, out = h[0], torch.full((chars.shape[0],), 2, dtype=torch.long), []
            for _ in range(STEPS):
                h = self.dec(self.dec_emb(tok), h)
                logits = self.fc(h)
                out.append(logits)
                tok = logits.argmax(-1)
            return torch.stack(out, 1)

    return G2P().eval(), (torch.from_numpy(letters(WORDS[:12])),)


def letters(words) -> np.ndarray:
    """Words of one length as g2p_en encodes them: each letter's index, then `</s>`."""
    return np.array([[GRAPHEMES.index(c) for c in w] + [2] for w in words], np.int64)


def phonemes(logits) -> list[tuple]:
    """Each word's phoneme ids, greedy, up to `</s>`."""
    seqs = []
    for row in np.asarray(logits).argmax(-1):
        ids = [int(p) for p in row]
        seqs.append(tuple(ids[:ids.index(END)] if END in ids else ids))
    return seqs


def words_metric(outputs, reference, label=None):
    """g2p_en's decision: the share of words spelled as the reference spells them (phonemes up to `</s>`)."""
    a, b = phonemes(next(iter(outputs.values()))), phonemes(next(iter(reference.values())))
    return float(np.mean([x == y for x, y in zip(a, b)]))
