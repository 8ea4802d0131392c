"""g2pM's polyphone disambiguation (g2pM 0.1.2.5, Apache-2.0: `g2pM/np_ckpt.pkl`, 1.6 MB in its 1.7 MB wheel, a
PyTorch model's state dict its author stored as numpy arrays and runs in numpy): a character embedding (5398 × 64),
a one-layer bidirectional LSTM (32 a direction), Linear 64 → 32, ReLU, Linear 32 → 876 pinyin classes, read at each
polyphonic character; the reading is the argmax (`G2pM.predict`). Ported here to torch as its state dict's names say
(`nn.LSTM(bidirectional=True)`: the numpy cells compute its gates in its order), and exported with the polyphones'
positions as an input (`targets`), as `predict` gathers them.

    pip install --no-deps g2pM==0.1.2.5   # its files only

Samples: windows of 30 characters (stride 10) over Chinese sentences written here, each rich in polyphones (行, 长,
还, 得, 重, 乐, 着, 都, 数, 处, 调, 藏, 便, 差, 传, 当, 干, 中, 降, 角, 看, 空, 难, 强, 少, 省, 相, 应, 只, 种,
转), wrapped in g2pM's BOS / EOS ids; its first 4 polyphonic characters the targets: `windows()`; the calibration the
even windows (`CALIB`)."""

from __future__ import annotations

import pickle

import numpy as np

from tests.trained.corpus import wheel_file

TEXT = (
    "我们银行的行长今天去了一趟长城，还说要把这笔钱还给他。"
    "他长得很高，头发也长了，可是他觉得睡觉的时间不够。"
    "这个地方的重量很重，我们要重新称一下。"
    "音乐让人快乐，他为了大家的事情忙得不得了。"
    "你得好好学习，考试考得好才能得到奖学金。"
    "他着急地走着，突然着了凉，只好回家休息。"
    "我们都去了首都北京，参观了很多地方。"
    "这首曲子很好听，他的爱好是唱歌和弹琴。"
    "数学老师数了数教室里的学生，一共三十个人。"
    "处理这件事情需要时间，他在办事处工作。"
    "请你调查一下空调为什么不工作，顺便调整温度。"
    "他把东西藏在西藏的一个山洞里，没有人发现。"
    "我的头发很长，发现自己需要去理发店。"
    "这里的便宜东西很多，你方便的时候来看看。"
    "他们之间的差别很大，出差的时候要注意安全。"
    "这个故事传了很久，他写了一本自传。"
    "当时我当了三年兵，当然很辛苦。"
    "衣服干了以后，你去干活吧。"
    "他在房间中间看书，中午就中暑了。"
    "飞机降落以后，敌人终于投降了。"
    "这个角色很难演，桌子的角坏了。"
    "看守大门的人在看电视，他看了很久。"
    "空气很新鲜，你有空的时候来玩。"
    "这个问题很难，灾难过后大家重建家园。"
    "他很强壮，不要勉强自己做不喜欢的事。"
    "少年时代的朋友很少见面了。"
    "省长去了广东省，节省了很多时间。"
    "他似乎很累，似的样子让人担心。"
    "相信自己，照相的时候要笑。"
    "应该答应他的请求，这是应用题。"
    "只有一只小鸟在树上唱歌。"
    "种子发芽了，这种花很漂亮，农民在种地。"
    "转眼一年过去了，车轮转得很快。"
)
CALIB = tuple(range(0, 56, 2))  # the even windows calibrate; the odd ones are held out


def _pickle(name: str):
    with open(wheel_file("g2pM", f"g2pM/{name}"), "rb") as f:
        return pickle.load(f)  # noqa: S301 - the wheel's own files


def windows(n: int = 30, stride: int = 10, targets: int = 4) -> list[dict[str, np.ndarray]]:
    """Feeds `ids` (1, n + 2) and `targets` (the first `targets` polyphones' positions) of each window that has as
    many polyphones (g2pM's cedict: more than one reading)."""
    ids, cedict = _pickle("char2idx.pkl"), _pickle("digest_cedict.pkl")
    feeds = []
    for s in range(0, len(TEXT) - n + 1, stride):
        w = TEXT[s:s + n]
        poly = [k + 1 for k, c in enumerate(w) if len(cedict.get(c, ())) > 1]  # +1: the BOS before
        if len(poly) >= targets:
            row = [ids["시"]] + [ids.get(c, ids["<UNK>"]) for c in w] + [ids["끝"]]  # g2pM's BOS / EOS
            feeds.append({"ids": np.array([row], np.int64), "targets": np.array(poly[:targets], np.int64)})
    return feeds


def model():
    """g2pM's network with its wheel's weights, in eval mode: (ids, targets) → (targets, 876) logits."""
    import torch
    from torch import nn

    class G2pM(nn.Module):
        def __init__(self, state: dict):
            super().__init__()
            self.embedding = nn.Embedding(*state["embedding.weight"].shape)
            self.lstm = nn.LSTM(64, 32, batch_first=True, bidirectional=True)
            self.logit_layer = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 876))

        def forward(self, ids, targets):
            out, _ = self.lstm(self.embedding(ids))
            return self.logit_layer(out[0][targets])

    state = _pickle("np_ckpt.pkl")
    m = G2pM(state)
    m.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in state.items()})
    return m.eval()


def pinyin_metric(outputs, reference, label=None) -> float:
    """The share of polyphonic characters whose reading (the argmax of the logits) is the reference's."""
    return float(np.mean(np.asarray(outputs["logits"]).argmax(-1) == np.asarray(reference["logits"]).argmax(-1)))
