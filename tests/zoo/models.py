"""A zoo of models no one here tuned cp_debug for (issue 54): torchvision's own modules with random weights, a
DETR-like CNN + Transformer, a text transformer with hand-written attention, and outputs of every shape a forward
returns (tuple, dict, dataclass / ModelOutput-like). Each `build_*` returns (module, example_inputs) as
`cpdebug bisect --torch tests/zoo/models.py:build_*` takes it; small enough that a bisect at `--level all` runs in
seconds on the CPU."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


def _seeded(seed: int = 0) -> None:
    torch.manual_seed(seed)


def build_resnet():
    """torchvision's ResNet of resnet18's BasicBlocks, random weights: BasicBlock calls `self.relu` twice. One block
    a stage and two in the last (resnet18 has two in each): the tests read layer1.0 and layer4.1, and a dynamo export
    of five blocks takes about two thirds of the eight's time."""
    from torchvision.models.resnet import BasicBlock, ResNet

    _seeded()
    return ResNet(BasicBlock, [1, 1, 1, 2], num_classes=10).eval(), (torch.randn(1, 3, 64, 64),)


def build_mobilenet():
    """torchvision's MobileNetV3-small: Hardswish, squeeze-excitation, a Dropout the exporters drop."""
    import torchvision

    _seeded()
    return torchvision.models.mobilenet_v3_small(weights=None, num_classes=10).eval(), (torch.randn(1, 3, 64, 64),)


def build_vit():
    """torchvision's VisionTransformer (two layers): every encoder layer's nn.MultiheadAttention."""
    from torchvision.models.vision_transformer import VisionTransformer

    _seeded()
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                            num_classes=10)
    return vit.eval(), (torch.randn(1, 3, 32, 32),)


class Detr(nn.Module):
    """A conv backbone, nn.TransformerEncoder / Decoder over its feature map, class and box heads: the shape of the
    "TensorRT FP16 drifts while FP32 matches" case. Returns a dict, as DETR does."""

    def __init__(self, d: int = 32, queries: int = 8, classes: int = 5):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.Conv2d(16, d, 3, 2, 1), nn.BatchNorm2d(d), nn.ReLU())
        self.pos = nn.Parameter(torch.randn(1, 64, d) * 0.1)
        layer = dict(d_model=d, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(**layer), num_layers=2,
                                             enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(**layer), num_layers=2)
        self.query = nn.Parameter(torch.randn(1, queries, d) * 0.1)
        self.class_head = nn.Linear(d, classes + 1)
        self.box_head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 4))

    def forward(self, image):
        f = self.backbone(image)  # [1, d, 8, 8]
        tokens = f.flatten(2).transpose(1, 2) + self.pos
        memory = self.encoder(tokens)
        hs = self.decoder(self.query.expand(image.shape[0], -1, -1), memory)
        return {"logits": self.class_head(hs), "boxes": self.box_head(hs).sigmoid()}


def build_detr():
    _seeded()
    return Detr().eval(), (torch.randn(1, 3, 32, 32),)


@dataclass
class TextOutput:  # a ModelOutput-like dataclass
    logits: torch.Tensor
    hidden: torch.Tensor


class Attention(nn.Module):
    """Attention written out by hand, as many text models do: q/k/v/o projections, QK^T, softmax, AV."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads, self.dh = heads, d // heads
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x):
        b, n, d = x.shape

        def split(t):
            return t.view(b, n, self.heads, self.dh).transpose(1, 2)

        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.dh)
        y = scores.softmax(-1) @ v
        return self.o_proj(y.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(d), Attention(d, heads)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TextModel(nn.Module):
    def __init__(self, vocab: int = 50, d: int = 32, heads: int = 4, layers: int = 2):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab)

    def forward(self, ids):
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        h = self.norm(x)
        return TextOutput(logits=self.lm_head(h), hidden=h)


def build_text():
    _seeded()
    return TextModel().eval(), (torch.randint(0, 50, (1, 12)),)


class Twice(nn.Module):
    """One module called twice on different values (weight sharing), its calls in one scope."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.shared = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.shared(torch.relu(self.shared(self.conv(x))))


def build_twice():
    _seeded()
    return Twice().eval(), (torch.randn(1, 4, 16, 16),)


def build_detr_planted():
    """The DETR-like model with its second encoder layer's query and key projections scaled up: that block's QK^T
    logits pass float16's 65504 while every module's output stays small (the seeds' FP16 overflow story)."""
    module, example = build_detr()
    attn = module.encoder.layers[1].self_attn
    d = attn.embed_dim
    with torch.no_grad():
        attn.in_proj_weight[: 2 * d] *= 270.0  # q and k rows: logits x 7e4, to about 1.9e5
        attn.in_proj_bias[: 2 * d] *= 270.0
    return module, example


def build_text_planted():
    """The text model with block 1's q/k projections scaled: its hand-written QK^T overflows float16."""
    module, example = build_text()
    attn = module.blocks[1].attn
    with torch.no_grad():
        for proj in (attn.q_proj, attn.k_proj):
            proj.weight *= 370.0  # logits x 1.4e5, to about 1.9e5
            proj.bias *= 370.0
    return module, example


def build_text_mlp_planted():
    """The text model with block 0's first MLP layer scaled: its output (a module boundary) passes 65504."""
    module, example = build_text()
    with torch.no_grad():
        module.blocks[0].mlp[0].weight *= 5e4  # its output reaches 9.3e4
    return module, example


class Branchy(nn.Module):
    """Data-dependent control flow: the exporter traces the branch the example input takes and freezes it."""

    def __init__(self):
        super().__init__()
        self.pos, self.neg = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        if x.mean() > 0:
            return self.pos(x)
        return self.neg(x)


def build_branchy():
    _seeded()
    return Branchy().eval(), (torch.rand(2, 4) + 0.5,)


def _outlier_channels(writer_weight, writer_bias, reader_weight, scale: float = 1000.0, channels: int = 2) -> None:
    """A few of the writer's output channels scaled by `scale` and the reader's weights on them by 1 / `scale`: the
    same function in FP32 (and within FP16's range), while the tensor between them holds outliers that set its
    per-tensor INT8 range, where most of its other values round to zero (the SmoothQuant story)."""
    with torch.no_grad():
        writer_weight[:channels] *= scale
        if writer_bias is not None:
            writer_bias[:channels] *= scale
        reader_weight[:, :channels] /= scale


def build_resnet_int8_planted():
    """torchvision's ResNet of one BasicBlock a stage (resnet18's blocks, half as many: a fast bisect), with
    layer2.0's conv1 writing two outlier channels (its BatchNorm keeps them: random weights leave its statistics at
    identity) that conv2 reads quantized per tensor."""
    return _resnet_int8(1000.0, 2)


def build_resnet_int8_one_channel():
    """As `build_resnet_int8_planted`, one channel ×100 (issue 69): a third of conv2's input rounds to zero, not
    most of it."""
    return _resnet_int8(100.0, 1)


def build_resnet_int8_twin():
    """The healthy twin of the planted ResNets: the same weights, no outlier channel."""
    return _resnet_int8(1.0, 0)


def _resnet_int8(scale: float, channels: int):
    from torchvision.models.resnet import BasicBlock, ResNet

    _seeded()
    module, example = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10).eval(), (torch.randn(1, 3, 32, 32),)
    block = module.layer2[0]
    _outlier_channels(block.conv1.weight, None, block.conv2.weight, scale, channels)
    return module, example


def build_text_int8_planted():
    """The text model with block 0's first MLP layer writing two outlier channels, through the GELU, that its second
    layer reads quantized per tensor."""
    module, example = build_text()
    mlp = module.blocks[0].mlp
    _outlier_channels(mlp[0].weight, mlp[0].bias, mlp[2].weight)
    return module, example


class HandLayerNorm(nn.Module):
    """A LayerNorm written out by hand, as BERT-era code has it, with BERT's eps of 1e-12."""

    def __init__(self, d: int, eps: float = 1e-12):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d)), eps

    def forward(self, x):
        u = x.mean(-1, keepdim=True)
        s = (x - u).pow(2).mean(-1, keepdim=True)
        return self.weight * (x - u) / torch.sqrt(s + self.eps) + self.bias


def build_eps_planted():
    """Linear → HandLayerNorm(eps 1e-12) → Linear, the first Linear writing a constant row (its variance 0): eps
    alone keeps the division finite, and FP16 rounds it to 0 (pytorch#86580)."""
    _seeded()
    net = nn.Sequential(nn.Linear(8, 16), HandLayerNorm(16), nn.Linear(16, 4)).eval()
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.fill_(0.5)
    return net, (torch.randn(1, 5, 8),)


class SumPool(nn.Module):
    """A token pooling that sums (the mean is taken after, by the caller): the sum of many in-range terms."""

    def forward(self, x):
        return x.sum(dim=1)


class LongSum(nn.Module):
    """Linear → ReLU → a sum over 4096 tokens → divide by the count → Linear: every term fits float16, the sum does
    not (4096 × ~20 ≈ 8e4 > 65504), the mean after it would."""

    def __init__(self):
        super().__init__()
        self.proj, self.pool, self.head = nn.Linear(8, 16), SumPool(), nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.pool(torch.relu(self.proj(x))) / x.shape[1])


def build_long_sum_planted():
    _seeded()
    net = LongSum().eval()
    with torch.no_grad():
        net.proj.weight.mul_(40.0)
        net.proj.bias.fill_(20.0)
    return net, (torch.randn(1, 4096, 8),)
