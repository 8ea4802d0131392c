"""Model types the LLM corpus never held, as a new user builds them (issue 116, s28): Phi-4-mini's partial rotary
(`Phi3ForCausalLM` with `partial_rotary_factor` 0.75: the builder rotates 48 of a head's 64 dims) carrying the massive
channel (`llm_files._massive`), Gemma 3's text decoder (four norms a layer around each branch, q/k norms, a sliding
layer with its own rotary base) and LFM2-MoE (a dense conv layer, then an attention layer whose MLP is a mixture of 4
experts routed by sigmoid scores with an expert bias). Tiny configs (`llm_files.SMALL`), random weights, nothing
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
}


def make_model(name: str, folder: Path) -> None:
    """A tiny model of `MODELS[name]`: biases and norm weights drawn (so that they matter; a Gemma norm's weight is an
    offset from 1), lm_head leaning towards a next-token permutation (`_bigram`) or the massive channel planted."""
    import torch

    config_cls, model_cls, extra, seed, massive = MODELS[name]
    model = L.tiny_model(config_cls, model_cls, extra, seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n and n.endswith("weight"):
                p.add_(torch.randn_like(p) * 0.1)
            elif "expert_bias" in n:
                p.normal_(0, 0.1)
        if massive is not None:
            L._massive(model, 0.0, alpha=massive)
        else:
            L._bigram(model, torch.Generator().manual_seed(seed), L.ALPHA)
    model.save_pretrained(folder)
    L._tokenizer(folder, model.config.vocab_size)
    # builder 0.18.0 reads rope_parameters["rope_type"]; it then refuses the config (no rope_local_base_freq)
    if name.startswith("gemma3"):
        path = folder / "config.json"
        saved = json.loads(path.read_text())
        rope = saved["rope_parameters"]
        saved["rope_parameters"] = {"rope_type": "default", "rope_theta": rope["full_attention"]["rope_theta"], **rope}
        path.write_text(json.dumps(saved, indent=2))


def files(hf: Path, root: Path) -> dict:
    """The builder's FP32 and INT4 files; one the builder refuses is said (its error), the other made."""
    out: dict = {}
    for precision in ("fp32", "int4"):
        try:
            out[precision] = L.build(hf, root / precision, precision)
        except Exception as e:  # the builder refusing this model type: said, not made
            out[precision] = f"FAIL {type(e).__name__}: {str(e)[:200]}"
    return out


def make(out: Path, n: int, models=tuple(MODELS)) -> dict:
    import llm_hidden as H

    return H.made_corpus(out, n, models, make_model, lambda name, hf, root: files(hf, root))


def main() -> None:
    import llm_hidden as H

    H.corpus_main(__doc__, MODELS, make)


if __name__ == "__main__":
    main()
