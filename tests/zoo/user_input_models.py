"""Models as users hand them over, for tests/zoo/test_user_input.py: HF BERT whose inputs are keyword tensors (a dict
of `input_ids` and `attention_mask`, or a tuple ending in such a dict), a model left in train mode, and a network
whose one activation module is shared by every block (ultralytics' Conv blocks share one `nn.SiLU`)."""

from __future__ import annotations

import torch
from torch import nn

SEQ = 16


def _bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=32, attn_implementation="eager")
    return BertModel(cfg).eval()


def _ids() -> torch.Tensor:
    return torch.randint(0, 100, (1, SEQ), generator=torch.Generator().manual_seed(0))


def build_bert_keywords():
    """HF style: the example inputs a dict of keyword tensors."""
    return _bert(), {"input_ids": _ids(), "attention_mask": torch.ones(1, SEQ, dtype=torch.int64)}


def build_bert_args_and_keywords():
    """torch.export's convention: positional tensors, then a dict of keyword tensors."""
    return _bert(), (_ids(), {"token_type_ids": torch.zeros(1, SEQ, dtype=torch.int64)})


def build_bert_ids():
    """Token ids alone, positional (an `--inputs` file can hold ids beyond the vocabulary of 100)."""
    return _bert(), (_ids(),)


def build_bert_bad_ids():
    """Example token ids beyond the vocabulary: the model's own embedding raises."""
    return _bert(), (torch.full((1, SEQ), 150, dtype=torch.int64),)


def build_train_mode():
    """A model with dropout and BatchNorm, left in train mode."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5),
                          nn.Conv2d(8, 4, 1))
    return model.train(), (torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)),)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, act: nn.Module):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act  # the same module object in every block

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class SharedAct(nn.Module):
    """Five conv blocks sharing one SiLU instance, as ultralytics' `Conv.default_act`."""

    def __init__(self):
        super().__init__()
        act = nn.SiLU()
        self.blocks = nn.Sequential(*[_Block(3 if i == 0 else 8, 8, act) for i in range(5)])
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(self.blocks(x))


def build_shared_act():
    torch.manual_seed(0)
    return SharedAct().eval(), (torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)),)


class _Thrice(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.SiLU()

    def forward(self, x):
        # the first call feeds both others, which run side by side: neither connected groups (the dynamo graph's
        # nodes form two) nor the data flow's cuts (no node of the second call is before or after the third's) tell
        # the calls apart
        a = self.act(self.conv(x))
        return self.act(a) * self.act(a + 1)


def build_thrice():
    torch.manual_seed(0)
    return _Thrice().eval(), (torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)),)
