"""A massive channel read INSIDE a decoder layer (issue 116, s11): the flip comes from a layer's `down_proj`
MatMulNBits at accuracy_level 4, not lm_head's. Tiny Mistral and Qwen2 (`llm_files.OTHER`'s configs) whose residual
stream carries channel 5 at 250 (as `llm_files._massive`) that no norm hands on but layer 1's post-attention norm
(~4 there): its `gate_proj` / `up_proj` row 5 read it alone, so `down_proj`'s input channel 5 is ~480 against ~0.3
(Qwen2: row 5 of each 32-value block). down_proj's weight there is zero: in float it adds nothing; at level 4 its
input is quantized per 32-value block and the block's other values round to zero. That layer's projections weigh
`MODELS`' gain x the random init's, so the layer matters to the logits; lm_head sees no massive channel (the final
norm weighs it 0). `_plant`'s "o_proj" (v_proj reading the channel, so that o_proj's input carries it) was tried and
not kept (docs/llm.md, s11). Each as the builder's FP32
and INT4 files, an RTN INT4 file (level 4) of its plain export and the plain export, with the right answers found
without cp_debug (`llm_files._answers`). Run in the builder's venv:

    /tmp/genai-venv/bin/python benchmarks/llm_inner.py OUT_DIR [--tokens 32]

Writes OUT_DIR/answers.json (tests/data/llm/answers_inner.json) and prints the scorecard.
"""
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llm_files as L  # noqa: E402

# model type -> (the node reading the massive channel, the layer's gain, every 32-value block of its input or one)
MODELS = {"mistral": ("down_proj", 6.0, False), "qwen2": ("down_proj", 4.0, True), "qwen3": ("down_proj", 5.0, False)}
DEFAULT = ("mistral", "qwen2")  # qwen3 (`--models qwen3`): its builder file's 4-bit weights flip the token as well
CONFIGS = {**L.OTHER, "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 16})}  # Qwen3: q/k norms
LAYER, ROW = 1, 5


def make_model(name: str, folder: Path, seed: int = 3) -> None:
    import torch

    model = L.tiny_model(*CONFIGS[name], seed)
    cfg = model.config
    with torch.no_grad():
        L._massive(model, 0.0, block_gain=1.0, final=0.0)  # lm_head sees no massive channel
        _plant(model, cfg, *MODELS[name], model.model.layers[LAYER])
    model.save_pretrained(folder)
    L._tokenizer(folder, cfg.vocab_size)


def _plant(model, cfg, where: str, gain: float, every_block: bool, layer) -> None:
    """The massive value read by `where`'s input at channel ROW (of every 32-value block where `every_block`)."""
    c = L.MASSIVE_CHANNEL
    if where == "down_proj":
        mlp = layer.mlp
        for p in (mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight):
            p.mul_(gain)
        layer.post_attention_layernorm.weight[c] = 0.5  # ~4 at channel c of the MLP's input
        for j in range(ROW, cfg.intermediate_size, 32) if every_block else (ROW,):
            mlp.gate_proj.weight[j] = 0.0
            mlp.gate_proj.weight[j, c] = 3.0  # silu(12) ~ 12
            mlp.up_proj.weight[j] = 0.0
            mlp.up_proj.weight[j, c] = 10.0  # 40: down_proj's input channel j ~ 480
            mlp.down_proj.weight[:, j] = 0.0
        return
    att = layer.self_attn
    for p in (att.v_proj.weight, att.o_proj.weight):
        p.mul_(gain)
    layer.input_layernorm.weight[c] = 0.5  # ~4 at channel c of attention's input
    hd = cfg.hidden_size // cfg.num_attention_heads
    group = cfg.num_attention_heads // cfg.num_key_value_heads
    for j in range(ROW, att.v_proj.weight.shape[0], hd) if every_block else (ROW,):
        att.v_proj.weight[j] = 0.0
        att.v_proj.weight[j, c] = 100.0  # v's channel j ~ 400 at every position: attention's output there too
        if att.v_proj.bias is not None:
            att.v_proj.bias[j] = 0.0
        kv_head, d = divmod(j, hd)
        for q in range(kv_head * group, (kv_head + 1) * group):  # the query heads sharing that kv head
            att.o_proj.weight[:, q * hd + d] = 0.0


def make(out: Path, n: int, models=DEFAULT) -> dict:
    return L.make_models(out, n, {f"{name}_inner": partial(make_model, name) for name in models})


if __name__ == "__main__":
    L.models_main(__doc__, make, DEFAULT, choices=MODELS)
