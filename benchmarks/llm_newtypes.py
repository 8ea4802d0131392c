"""Model types the LLM corpus never held, as a new user builds them (issue 116, s28): Phi-4-mini's partial rotary
(`Phi3ForCausalLM` with `partial_rotary_factor` 0.75: the builder rotates 48 of a head's 64 dims) carrying the massive
channel (`llm_files._massive`), Gemma 3's text decoder (four norms a layer around each branch, q/k norms, a sliding
layer with its own rotary base) and LFM2-MoE (a dense conv layer, then an attention layer whose MLP is a mixture of 4
experts routed by sigmoid scores with an expert bias); s29: SmolLM3 (a layer without rotary), Nemotron (LayerNorm1P,
relu²), ERNIE 4.5 and Qwen3.5 (a Gated DeltaNet layer with conv and recurrent states, then attention with a multimodal
rotary: position_ids [3, batch, seq]), each healthy and with the massive channel, also as the plain export and
`MatMulNBitsQuantizer`'s RTN INT4 file of it. Tiny configs (`llm_files.SMALL`), random weights, nothing
downloaded; each as the builder's FP32 and INT4 files (`-p int4 -e cpu`: accuracy_level 4), with the right answers
found without cp_debug (`llm_files._answers`: 16 greedy tokens of each file against PyTorch's; for a flip, each
level-4 MatMulNBits node at level 1 alone and alone at level 4). Run in the builder's venv:

    /tmp/s28-genai/bin/python benchmarks/llm_newtypes.py OUT_DIR [--tokens 16] [--models NAME...]

Writes OUT_DIR/answers.json and prints the scorecard.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llm_files as L  # noqa: E402

# name -> (config class, model class, the config's fields over llm_files.SMALL, seed, massive channel's alpha or None)
MODELS = {
    # one head of 64, 48 rotary dims (ORT's GroupQueryAttention wants the rotary half a multiple of 8)
    "phi4mini_massive": ("Phi3Config", "Phi3ForCausalLM", {
        "num_attention_heads": 1, "num_key_value_heads": 1, "intermediate_size": 96,
        "partial_rotary_factor": 0.75, "original_max_position_embeddings": 256}, 31, 0.35),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", {
        "head_dim": 16, "sliding_window": 4, "layer_types": ["sliding_attention", "full_attention"]}, 32, None),
    "lfm2moe": ("Lfm2MoeConfig", "Lfm2MoeForCausalLM", {
        "layer_types": ["conv", "full_attention"], "num_dense_layers": 1, "num_experts": 4, "num_experts_per_tok": 2,
        "moe_intermediate_size": 32, "norm_eps": 1e-5, "conv_L_cache": 3}, 33, None),
    # s29: model types s7 built healthy only, each healthy and with the massive channel; SmolLM3's layer 1 without
    # rotary (NoPE), Nemotron's LayerNorm1P (a weight of (1 + w), a mean removed) and relu² (`rms_norm_eps` in its
    # config, which the builder reads: s7 found its FP32 file flipping at eps 1e-6 without it), ERNIE 4.5
    **{f"{name}{tag}": (*spec, seed + off, alpha) for name, (*spec, seed) in {
        "smollm3": ("SmolLM3Config", "SmolLM3ForCausalLM", {
            "no_rope_layers": [1, 0], "tie_word_embeddings": False}, 41),
        "nemotron": ("NemotronConfig", "NemotronForCausalLM", {
            "partial_rotary_factor": 0.5, "head_dim": 32, "num_attention_heads": 2, "rms_norm_eps": 1e-5}, 43),
        "ernie45": ("Ernie4_5Config", "Ernie4_5ForCausalLM", {"head_dim": 16, "tie_word_embeddings": False}, 45),
    }.items() for tag, off, alpha in (("", 0, None), ("_massive", 100, 0.35))},
}
S28 = ("phi4mini_massive", "gemma3", "lfm2moe")
# s29: Qwen3.5, a hybrid of Gated DeltaNet layers (the builder's LinearAttention, CausalConvWithState; its states
# `past.0.conv` / `past.0.recurrent`) and attention with a multimodal rotary (position_ids [3, batch, seq]); the
# builder takes its image-text model (`Qwen3_5ForConditionalGeneration`), here with a one-block vision tower
QWEN35_TEXT = {"head_dim": 64, "layer_types": ["linear_attention", "full_attention"], "linear_num_key_heads": 2,
               "linear_num_value_heads": 4, "linear_key_head_dim": 16, "linear_value_head_dim": 16,
               "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25,
                                   "mrope_section": [3, 3, 2], "mrope_interleaved": True}}
QWEN35_VISION = {"depth": 1, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "out_hidden_size": 64}
MODELS |= {f"qwen35{tag}": ("Qwen3_5Config", "Qwen3_5ForConditionalGeneration", {}, 47 + off, alpha)
           for tag, off, alpha in (("", 0, None), ("_massive", 100, 0.35))}
# norms whose weight is an offset from 1: the massive channel planted as `llm_files._massive` plants it, less 1
ONE_PLUS_NORMS = ("NemotronLayerNorm1P", "Qwen3_5RMSNorm")


def _model(name: str):
    """`MODELS[name]` from its config (`llm_files.tiny_model`; Qwen3.5's text config over `llm_files.SMALL` and a
    tiny vision tower), and the decoder's view `llm_files._massive` and `_bigram` work on (model.model, lm_head)."""
    import types

    import torch
    import transformers

    config_cls, model_cls, extra, seed, _ = MODELS[name]
    if config_cls != "Qwen3_5Config":
        model = L.tiny_model(config_cls, model_cls, extra, seed)
        return model, model
    torch.manual_seed(seed)
    cfg = transformers.Qwen3_5Config(text_config=L.SMALL | QWEN35_TEXT, vision_config=QWEN35_VISION,
                                     tie_word_embeddings=False)
    model = getattr(transformers, model_cls)(cfg).eval()
    return model, types.SimpleNamespace(model=model.model.language_model, lm_head=model.lm_head,
                                        config=cfg.text_config)


def make_model(name: str, folder: Path) -> None:
    """A tiny model of `MODELS[name]`: biases and norm weights drawn (so that they matter; a Gemma norm's weight is an
    offset from 1), lm_head leaning towards a next-token permutation (`_bigram`) or the massive channel planted."""
    import torch

    *_, seed, massive = MODELS[name]
    model, decoder = _model(name)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n and n.endswith("weight"):
                p.add_(torch.randn_like(p) * 0.1)
            elif "expert_bias" in n:
                p.normal_(0, 0.1)
        if massive is not None:
            L._massive(decoder, 0.0, alpha=massive)
            layers = decoder.model.layers
            for norm in [decoder.model.norm, *(getattr(x, k) for x in layers for k in ("input_layernorm",
                                                                                         "post_attention_layernorm"))]:
                if type(norm).__name__ in ONE_PLUS_NORMS:
                    norm.weight.sub_(1.0)
        else:
            L._bigram(decoder, torch.Generator().manual_seed(seed), L.ALPHA)
    model.save_pretrained(folder)
    L._tokenizer(folder, decoder.config.vocab_size)
    # builder 0.18.0 reads rope_parameters["rope_type"]; it then refuses the config (no rope_local_base_freq)
    if name.startswith("gemma3"):
        path = folder / "config.json"
        saved = json.loads(path.read_text())
        rope = saved["rope_parameters"]
        saved["rope_parameters"] = {"rope_type": "default", "rope_theta": rope["full_attention"]["rope_theta"], **rope}
        path.write_text(json.dumps(saved, indent=2))


def files(hf: Path, root: Path, quantizer: bool = False) -> dict:
    """The builder's FP32 and INT4 files; one the builder refuses is said (its error), the other made. `quantizer`
    (s29's models): also the plain export and `MatMulNBitsQuantizer`'s RTN INT4 file of it (level 4, block 32)."""
    out: dict = {}
    for precision in ("fp32", "int4"):
        try:
            out[precision] = L.build(hf, root / precision, precision)
        except Exception as e:  # the builder refusing this model type: said, not made
            out[precision] = f"FAIL {type(e).__name__}: {str(e)[:200]}"
    if quantizer:
        plain = L.export_plain(hf, root / "plain" / "model.onnx")
        out["plain_fp32"] = plain
        out["rtn_int4_level4"] = L.rtn_int4(plain, root / "rtn_int4_level4" / "model.onnx", 4)
    return out


def make(out: Path, n: int, models=tuple(MODELS)) -> dict:
    import llm_hidden as H

    return H.made_corpus(out, n, models, make_model, lambda name, hf, root: files(hf, root, name not in S28))


def main() -> None:
    import llm_hidden as H

    H.corpus_main(__doc__, MODELS, make)


if __name__ == "__main__":
    main()
