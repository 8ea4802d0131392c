"""Models from the libraries users deploy — HF `transformers` and `timm` — built from configs with seeded random
weights (no download), each with an FP16 fault planted at a known module, for `--torch tests/zoo/hf_models.py:build_*`.

A planted attention overflow scales one layer's query and key projections so that its QK^T logits pass float16's
65504 while every module's output stays in range: the fault users report on FP16 deployments of transformers."""

from __future__ import annotations

import torch

SEQ = 16


def _scaled(*linears: torch.nn.Linear, by: float) -> None:
    with torch.no_grad():
        for lin in linears:
            lin.weight.mul_(by)
            if lin.bias is not None:
                lin.bias.mul_(by)


def _tokens(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (1, SEQ), generator=torch.Generator().manual_seed(0))


def build_bert_planted():
    """HF BertModel (2 layers, hidden 64, eager attention): layer 1's query and key scaled ×500 — its attention
    scores reach ~1e5. Input: token ids alone (no mask)."""
    return _bert_scaled(layers=2, attention="eager", by=500.0)


def build_bert_guarded():
    """HF BertModel with SDPA attention (3 layers, hidden 64): layer 1's query and key scaled ×1300 — its attention
    scores reach 1.7e5, past float16's range; the exported SDPA's IsNaN/Where guard turns the NaN rows of its
    softmax into zeros, and the residual carries the block's output within tolerance (issue 84)."""
    return _bert_scaled(layers=3, attention="sdpa", by=1300.0)


def _bert_scaled(*, layers: int, attention: str, by: float):
    """A seeded HF BertModel (hidden 64, 2 heads) with layer 1's query and key scaled by `by`; token ids alone."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=128, max_position_embeddings=32, attn_implementation=attention)
    model = BertModel(cfg).eval()
    att = model.encoder.layer[1].attention.self
    _scaled(att.query, att.key, by=by)
    return model, (_tokens(cfg.vocab_size),)


def build_llama_planted():
    """HF LlamaModel (2 layers, hidden 64, RMSNorm, rotary, causal mask, eager attention): layer 1's q and k
    projections scaled ×500."""
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=128, max_position_embeddings=32,
                      attn_implementation="eager")
    model = LlamaModel(cfg).eval()
    att = model.layers[1].self_attn
    _scaled(att.q_proj, att.k_proj, by=500.0)
    return model, (_tokens(cfg.vocab_size),)


class _Encoder(torch.nn.Module):
    """A transformers encoder's last hidden state as the model's one output."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x):
        return self.encoder(x).last_hidden_state


def build_whisper_planted():
    """HF WhisperEncoder (2 layers, d_model 64, 16 mel bins, 32 frames, eager attention): layer 1's q and k
    projections scaled ×2000 — its QK^T logits reach 4e5 (float16's 65504), a softmax row one-hot in FP32 picks
    another key in FP16 (issue 115: the root cause named at `out_proj`, the reason at `self_attn`)."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    torch.manual_seed(0)
    cfg = WhisperConfig(num_mel_bins=16, d_model=64, encoder_layers=2, encoder_attention_heads=2,
                        encoder_ffn_dim=128, max_source_positions=16, attn_implementation="eager")
    model = _Encoder(WhisperEncoder(cfg)).eval()
    att = model.encoder.layers[1].self_attn
    _scaled(att.q_proj, att.k_proj, by=2000.0)
    return model, (torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(1)),)


def build_timm_planted():
    """timm's ResNet (resnet10t, 10 classes, 64×64): the last stage's first conv scaled ×2e5, its output beyond
    float16's range."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=10).eval()
    with torch.no_grad():
        model.layer4[0].conv1.weight.mul_(2e5)
    return model, (torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)),)


def build_bert_masked():
    """A healthy HF BertModel (eager attention) given token ids and an attention mask whose last 4 positions are
    padding: transformers fills their logits with finfo(float32).min (-3.4e38), which saturates to -inf in FP16."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, max_position_embeddings=32, attn_implementation="eager")
    mask = torch.ones(1, SEQ, dtype=torch.long)
    mask[0, -4:] = 0
    return BertModel(cfg).eval(), (_tokens(cfg.vocab_size), mask)


def build_detr_planted(scale: float = 500.0):
    """HF DetrModel (a small ResNet backbone from its config, 2 encoder and 2 decoder layers, d_model 64, eager
    attention, 128×128 image): encoder layer 1's query and key projections scaled ×`scale`. Its attention's own
    output is no probe at the default level: the LayerNorm after it is the first probe its NaN reaches."""
    from transformers import DetrConfig, DetrModel, ResNetConfig

    torch.manual_seed(0)
    backbone = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 64], depths=[1, 1, 1, 1],
                            out_features=["stage4"])
    cfg = DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False, backbone_config=backbone, d_model=64,
                     encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
                     encoder_ffn_dim=128, decoder_ffn_dim=128, num_queries=10, attn_implementation="eager")
    model = DetrModel(cfg).eval()
    att = model.encoder.layers[1].self_attn
    _scaled(att.q_proj, att.k_proj, by=scale)
    return model, (torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0)),)


def build_detr_healthy():
    return build_detr_planted(1.0)


def build_rtdetr():
    """HF RTDetrForObjectDetection from a small config (a basic ResNet backbone 16-32-64-128, d_model 64, 2 decoder
    layers, 20 queries chosen by the encoder's TopK over 336 anchors, no denoising), 128×128 image, with PyTorch's own
    initialisation (He-normal convs): HF's init for a random RT-DETR leaves the backbone's maps near 1e-3 and the
    decoder's input projection near 1e-10, under float16's subnormals, and every anchor's score the bias alone. Its
    healthy FP16 run swaps queries at the encoder's TopK (issue 84, item 2): its scores lie 1.2e-5 and 5e-4 apart
    at ranks 14/15 and 9/10, and 9.4e-4 apart at the cut, within float16's step there (9.8e-4)."""
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrResNetConfig

    torch.manual_seed(0)
    backbone = RTDetrResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
                                  layer_type="basic", out_features=["stage2", "stage3", "stage4"])
    cfg = RTDetrConfig(backbone_config=backbone, use_pretrained_backbone=False, use_timm_backbone=False, d_model=64,
                       encoder_hidden_dim=64, encoder_in_channels=[32, 64, 128], decoder_in_channels=[64, 64, 64],
                       encoder_ffn_dim=128, decoder_ffn_dim=128, encoder_attention_heads=2, decoder_attention_heads=2,
                       decoder_layers=2, num_queries=20, num_labels=4, num_denoising=0, decoder_n_points=2)
    model = RTDetrForObjectDetection(cfg).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
        elif isinstance(m, (torch.nn.Linear, torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
            m.reset_parameters()
        if hasattr(m, "reset_running_stats"):
            m.reset_running_stats()
    return model, (torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0)),)


class _HiddenState(torch.nn.Module):
    """An HF encoder called by keywords (transformers 5 takes no positional mask) returning its last hidden state,
    as a user wraps it for export."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.bert = model

    def forward(self, input_ids, attention_mask):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def build_bert_sdpa_masked():
    """A healthy HF BertModel with transformers' default (SDPA) attention and a padding mask on its last 4 positions:
    exported by TorchScript, the masked logits are -inf in FP32 itself (not finfo.min), and a softmax guard
    (IsNaN → Where) follows."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, max_position_embeddings=32)
    mask = torch.ones(1, SEQ, dtype=torch.long)
    mask[0, -4:] = 0
    return _HiddenState(BertModel(cfg, add_pooling_layer=False)).eval(), (_tokens(cfg.vocab_size), mask)


def build_bert_sdpa_clamped():
    """`build_bert_sdpa_masked` with 8 weights of one output channel of layer 0's `output.dense` scaled ×4e5: some
    pass 1e4, which an FP16 converter (onnxconverter-common, polygraphy's --fp-to-fp16) clamps to 1e4 — the file then
    computes another layer; no activation passes FP16's range."""
    model, inputs = build_bert_sdpa_masked()
    with torch.no_grad():
        model.bert.encoder.layer[0].output.dense.weight[5, :8] *= 4e5
    return model, inputs


def build_llama_deep(plant: float = 1.0):
    """Issue 108, item 2: a narrow deep HF LlamaForCausalLM from a config (32 layers, hidden 64, random weights of std
    0.25 — the per-layer scale of a 7 B Llama's 0.02 at hidden 4096 and a little more — 64 tokens): FP16's rounding
    accumulates along the layers to 1.14× FP16's one-network budget at its last probes (ort-cpu-fp16, the residual
    stream's max |x| 177, far from float16's range), as a healthy 7 B Llama did on an H200. `plant`: layer 20's q and
    k projections scaled by it (×500: its attention scores pass float16's range)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=256, hidden_size=64, num_hidden_layers=32, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=172, max_position_embeddings=64,
                      initializer_range=0.25, attn_implementation="eager", tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).eval()
    att = model.model.layers[20].self_attn
    _scaled(att.q_proj, att.k_proj, by=plant)
    return model, (torch.randint(0, cfg.vocab_size, (1, 64), generator=torch.Generator().manual_seed(0)),)


def build_llama_deep_planted():
    return build_llama_deep(500.0)
