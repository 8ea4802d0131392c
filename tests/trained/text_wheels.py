"""The trained-weights corpus's text models (issue 115, item 6): attacut's Thai word boundaries and g2pM's Chinese
polyphone readings (tests/trained/attacut.py, g2pm.py: their wheels' weights, exported here as their users export
them, torch's TorchScript exporter at opset 17), each with its application's decision — an int64 character sequence
in, an embedding's Gather the graph's first op.

    pip install --no-deps attacut==1.0.6 g2pM==0.1.2.5   # 1.3 MB and 1.7 MB wheels, their files only"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np


def _exported(module, feed: dict, outputs: list[str]):
    """`module` exported as its users export it (TorchScript, opset 17), its inputs named as `feed`'s."""
    import onnx
    import torch

    buf = io.BytesIO()
    torch.onnx.export(module, tuple(torch.from_numpy(v) for v in feed.values()), buf, input_names=list(feed),
                      output_names=outputs, opset_version=17, dynamo=False)
    return onnx.load_from_string(buf.getvalue())


@dataclass
class Attacut:
    """attacut 1.0.6's attacut-c (`attacut/artifacts/attacut-c/model.pth`). Decision: a word starts at each character
    (p > 0.5, its tokenizer's `pred_threshold`), per window of 128 characters (17 windows, stride 64)."""

    name: str = "attacut"

    def model(self):
        from tests.trained.attacut import model, windows

        return _exported(model(), {"chars": windows()[0]}, ["boundary"])

    def samples(self, run) -> list[dict]:
        from tests.trained.attacut import windows

        return [{"chars": w} for w in windows()]

    def decisions(self, run, feeds) -> list:
        return [tuple((np.asarray(run(f)[0]) > 0.5).tolist()) for f in feeds]


@dataclass
class G2pm:
    """g2pM 0.1.2.5 (`g2pM/np_ckpt.pkl`, ported to torch). Decision: each polyphone's reading (the argmax over 876
    pinyin classes), 4 a window of 30 characters (56 windows, stride 10)."""

    name: str = "g2pm"

    def model(self):
        from tests.trained.g2pm import model, windows

        return _exported(model(), windows()[0], ["logits"])

    def samples(self, run) -> list[dict]:
        from tests.trained.g2pm import windows

        return windows()

    def decisions(self, run, feeds) -> list:
        return [tuple(np.asarray(run(f)[0]).argmax(-1).tolist()) for f in feeds]


@dataclass
class Deepcut:
    """pythainlp 5.4.0's DeepCut (`pythainlp/corpus/deepcut.onnx`, its author's tf2onnx file, as it ships; tests/
    trained/deepcut.py). Decision: a word boundary at each character (> 0.5, as `segment` reads it), per text (16
    sentences written here; the even ones calibrate)."""

    name: str = "deepcut"

    def model(self):
        import onnx

        from tests.trained.deepcut import model_path

        return onnx.load(str(model_path()))

    def samples(self, run) -> list[dict]:
        from tests.trained.deepcut import TEXTS, feeds

        return [feeds([t]) for t in TEXTS]

    def decisions(self, run, feeds) -> list:
        return [tuple((np.asarray(run(f)[0]).ravel() > 0.5).tolist()) for f in feeds]


@dataclass
class G2pidDecoder:
    """g2p-id-py 0.4.2's LSTM decoder, one step (`g2p_id/models/lstm/decoder_model.onnx`, its author's tf2onnx file,
    as it ships; tests/trained/g2pid.py). Decision: the next phoneme (the argmax of `dense`, as `LSTM.predict` reads
    it), per step (the first 64 steps of 66 words decoded in FP32, shuffled)."""

    name: str = "g2pid-decoder"

    def model(self):
        import onnx

        from tests.trained.g2pid import models

        return onnx.load(str(models() / "lstm" / "decoder_model.onnx"))

    def samples(self, run) -> list[dict]:
        from tests.trained.g2pid import decoder_steps

        judged, _ = decoder_steps(64, 1)
        return [{k: v[i:i + 1] for k, v in judged.items()} for i in range(64)]

    def decisions(self, run, feeds) -> list:
        return [int(np.asarray(run(f)[0]).argmax()) for f in feeds]


TEXT = {m.name: m for m in (Attacut(), G2pm(), Deepcut(), G2pidDecoder())}
# their decisions as `--metric FILE.py:FUNC` reads them, beside the models' own files
TEXT_METRICS = {"attacut": ("attacut.py", "boundary_metric"), "g2pm": ("g2pm.py", "pinyin_metric"),
                "deepcut": ("deepcut.py", "boundary_metric"), "g2pid-decoder": ("g2pid.py", "phoneme_metric")}
