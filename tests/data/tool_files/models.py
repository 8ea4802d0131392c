"""The two small models of the tool-file corpus (issue 107 item 5), as `--torch FILE.py:FUNC` takes them.

Neither is cp_debug's own: a tiny Hugging Face BertModel (the interface optimum's exporter writes for BERT:
input_ids, attention_mask, token_type_ids → last_hidden_state) and a ResNet-style CNN. Their weights are stored
beside this file (`bert.safetensors`, `cnn.safetensors`) rather than drawn from a seed, because torch and
transformers versions draw differently and the tool files must stay the exports of exactly these weights.
The planted variants change the stored weights in code, deterministically, so a planted file and its module
always agree: `PLANTS` holds the numbers (`make.py` copies them into cases.json).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
BERT_CONFIG = dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=256, max_position_embeddings=128, type_vocab_size=2)
BERT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
CNN_INPUTS = ("input",)
# The plants. BERT: one output channel of encoder.layer.0.output.dense scaled by `scale` ("planted": its output
# passes FP16's 65504; the function changes, and that channel then dominates the LayerNorm after it). CNN: one
# channel of block2's first conv-bn made `scale` times larger (bn1's weight and bias: the BN-folded conv1 of
# every export carries it) and conv2's weights reading that channel divided by it, so the FP32 function is the
# same (ReLU is positively homogeneous) while per-tensor INT8/FP8 of conv1 loses its other channels and, with
# the "planted" scale, conv1's activation passes 65504 (the folded weights stay under 1e4, onnxconverter-
# common's clamp). "outlier" is the moderate plant: INT8 broken, nothing near FP16's range.
PLANTS = {
    "bert": {"planted": {"weight": "bert.encoder.layer.0.output.dense.weight", "channel": 12, "scale": 1.0e6}},
    "cnn": {v: {"weight": "block2.bn1.weight", "bias": "block2.bn1.bias", "channel": 28, "scale": s,
                "compensated": "block2.conv2.weight[:, 28] / scale", "layer": "block2.conv1 (with block2.bn1)"}
            for v, s in (("planted", 1.25e5), ("outlier", 1000.0))},
}


class BertWrap(nn.Module):
    """A BertModel called as optimum's ONNX export calls it: three int64 inputs, last_hidden_state out."""

    def __init__(self):
        super().__init__()
        from transformers import BertConfig, BertModel
        config = BertConfig(**BERT_CONFIG, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        config._attn_implementation = "eager"  # one attention path whatever the installed transformers picks
        self.bert = BertModel(config, add_pooling_layer=False)

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return out.last_hidden_state


class BasicBlock(nn.Module):
    """ResNet's basic block: conv-bn-relu-conv-bn plus the shortcut (a strided 1x1 conv-bn when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + idt)


class SmallResNet(nn.Module):
    """conv-bn-relu stem, two basic blocks (the second strided), global average pool, linear: 1x3x32x32 → 1x10."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.block1 = BasicBlock(16, 16, 1)
        self.block2 = BasicBlock(16, 32, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.block2(self.block1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def plant_weights(state: dict, model: str, variant: str = "planted") -> dict:
    """`state` with a plant applied: one output channel of PLANTS[model][variant]['weight'] times its scale."""
    plant = PLANTS[model][variant]
    state = dict(state)
    k, s = plant["channel"], plant["scale"]
    for key in (plant["weight"], plant.get("bias")):
        if key:
            state[key] = state[key].clone()
            state[key][k] *= s
    if model == "cnn":
        w = state["block2.conv2.weight"].clone()
        w[:, k] /= s
        state["block2.conv2.weight"] = w
    return state


def load_state(model: str) -> dict:
    """The stored weights of `model` ('bert' or 'cnn') as a torch state dict."""
    from safetensors.torch import load_file
    return load_file(str(HERE / f"{model}.safetensors"))


def example_inputs(model: str) -> tuple:
    """The sample inputs stored in `<model>_inputs.npz`, as torch tensors in the forward's order."""
    names = BERT_INPUTS if model == "bert" else CNN_INPUTS
    data = np.load(HERE / f"{model}_inputs.npz")
    return tuple(torch.from_numpy(data[n]) for n in names)


def build(model: str, variant: str = "healthy"):
    """(module in eval mode, sample inputs) of `model` ('bert', 'cnn') as `variant` ('healthy', 'planted',
    'outlier')."""
    module = BertWrap() if model == "bert" else SmallResNet()
    state = load_state(model)
    module.load_state_dict(state if variant == "healthy" else plant_weights(state, model, variant))
    return module.eval(), example_inputs(model)


def build_bert():
    """The healthy tiny BERT and its sample inputs (`--torch tests/data/tool_files/models.py:build_bert`)."""
    return build("bert")


def build_bert_planted():
    """The BERT with one output channel of encoder.layer.0.output.dense scaled up (FP16 overflow, INT8 outlier)."""
    return build("bert", "planted")


def build_cnn():
    """The healthy small ResNet and its sample input."""
    return build("cnn")


def build_cnn_planted():
    """The ResNet with one channel of block2's conv1-bn1 125000x larger, compensated in conv2 (INT8/FP8 outlier,
    FP16 overflow at conv1, the FP32 function unchanged)."""
    return build("cnn", "planted")


def build_cnn_outlier():
    """The ResNet with the same channel 1000x, compensated: per-tensor INT8 of block2.conv1 loses its others."""
    return build("cnn", "outlier")
