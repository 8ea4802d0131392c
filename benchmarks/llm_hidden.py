"""A hidden corpus for issue 116 (s26): files the suite does not hold, made as a new user makes them — other seeds and
sizes (more layers, wider, GQA 4:1 and MQA, tied embeddings, attention and MLP biases), the builder's options not
tried on these model types (`-p int8`; `accuracy_level` 2 / 3; `block_size` 16 / 64 / 128; `is_symmetric=false`;
`op_types_to_quantize=MatMul/Gather`; `nodes_to_exclude`; `exclude_lm_head`: builder 0.18.0 silently ignores the
`int4_`-prefixed names its help calls deprecated aliases that still work — `int4_accuracy_level=3`,
`int4_block_size=64` and `int4_is_symmetric=false` each wrote its default file, level 4, block 32, symmetric),
MatMulNBitsQuantizer's other algorithms (HQQ, k-quant, DEFAULT asymmetric at block 64, GPTQ on random ids) with
`accuracy_level` 4, and the massive channel (`llm_files._massive`) planted in a Llama, a model type where it never was.
The right answers are found without cp_debug (`llm_files`: greedy tokens against PyTorch's, each level-4 node at level 1
alone and alone at level 4). Run in the builder's venv:

    /tmp/s22-llm-venv/bin/python benchmarks/llm_hidden.py OUT_DIR [--tokens 16] [--models NAME...]

Writes OUT_DIR/answers.json and prints the scorecard.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llm_files as L  # noqa: E402
import llm_variants as V  # noqa: E402

# name -> (config class, model class, the config's fields over llm_files.SMALL, seed, the massive channel's bigram
# alpha or None: 0.35, as the default 0.5 leaves a Llama's margins above what its lm_head's level 4 moves, 2.4 logits)
MODELS = {
    "llama_wide": ("LlamaConfig", "LlamaForCausalLM", {
        "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4, "num_attention_heads": 8,
        "num_key_value_heads": 2, "attention_bias": True, "mlp_bias": True}, 21, None),
    # the same with an MLP not as wide as the vocabulary (llama_wide's 256 = vocab: builder 0.18.0 takes it for lm_head)
    "llama_bias": ("LlamaConfig", "LlamaForCausalLM", {
        "hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4, "num_attention_heads": 8,
        "num_key_value_heads": 2, "attention_bias": True, "mlp_bias": True}, 26, None),
    "qwen2_tied": ("Qwen2Config", "Qwen2ForCausalLM", {
        "hidden_size": 96, "intermediate_size": 192, "num_hidden_layers": 3, "num_attention_heads": 6,
        "num_key_value_heads": 3, "tie_word_embeddings": True}, 22, None),
    "mistral_mqa": ("MistralConfig", "MistralForCausalLM", {
        "num_hidden_layers": 3, "num_key_value_heads": 1, "sliding_window": None}, 23, None),
    "phi3_deep": ("Phi3Config", "Phi3ForCausalLM", {
        "num_hidden_layers": 4, "intermediate_size": 160, "original_max_position_embeddings": 256}, 24, None),
    "llama_massive": ("LlamaConfig", "LlamaForCausalLM", {"num_hidden_layers": 3}, 25, 0.35),
}
# the builder's files of each model: folder -> (precision, extra options as a user writes them)
COMMON = {"fp32": ("fp32", None), "int4": ("int4", None), "int8": ("int8", None)}
BUILDS = {
    "llama_wide": {"int4_block64": ("int4", {"block_size": "64"}),
                   "int4_asym": ("int4", {"is_symmetric": "false"}),
                   "int4_level3": ("int4", {"accuracy_level": "3"})},
    "llama_bias": {"int4_level3": ("int4", {"accuracy_level": "3"}),
                   "int4_asym_block128": ("int4", {"is_symmetric": "false", "block_size": "128"})},
    "qwen2_tied": {"int4_block16": ("int4", {"block_size": "16"}),
                   "int4_gather": ("int4", {"op_types_to_quantize": "MatMul/Gather"}),
                   "int4_level2": ("int4", {"accuracy_level": "2"})},
    "mistral_mqa": {"int4_block128": ("int4", {"block_size": "128"}),
                    "int4_excl_down0": ("int4", {"nodes_to_exclude": "/model/layers.0/mlp/down_proj/MatMul"}),
                    "int4_excl_lm_head": ("int4", {"exclude_lm_head": "true"})},
    "phi3_deep": {"int4_asym_block64": ("int4", {"is_symmetric": "false", "block_size": "64"}),
                  "int8_asym": ("int8", {"is_symmetric": "false"})},
    "llama_massive": {"int4_level3": ("int4", {"accuracy_level": "3"}),
                      "int4_block64": ("int4", {"block_size": "64"}),
                      "int4_asym": ("int4", {"is_symmetric": "false"}),
                      "int4_gather": ("int4", {"op_types_to_quantize": "MatMul/Gather"}),
                      "int4_lm_head_excluded": ("int4", {"nodes_to_exclude": "/lm_head/MatMul"})},
}
# MatMulNBitsQuantizer on the plain export (`llm_variants.quant`'s algorithms): folder -> (algo, options)
QUANTS = {
    "rtn_int4_level4": ("rtn", {"accuracy_level": 4}),
    "hqq_b32": ("hqq", {"block_size": 32}),
    "kquant": ("kquant", {}),
    "default_asym_b64_l4": ("default", {"block_size": 64, "is_symmetric": False, "accuracy_level": 4}),
    "gptq_b32": ("gptq", {"block_size": 32}),
}


def make_model(name: str, folder: Path) -> None:
    """A tiny model of `MODELS[name]` from its config: random weights, biases drawn, lm_head leaning towards a
    next-token permutation (tied: the embeddings scaled instead, as `llm_variants.new_archs`), or the massive
    channel."""
    import torch

    *config, seed, massive = MODELS[name]
    model = L.tiny_model(*config, seed)
    cfg = model.config
    with torch.no_grad():
        if massive is not None:
            L._massive(model, 0.0, alpha=massive)
        elif cfg.tie_word_embeddings:
            model.model.embed_tokens.weight.mul_(8.0)
        else:
            L._bigram(model, torch.Generator().manual_seed(seed), L.ALPHA)
    model.save_pretrained(folder)
    L._tokenizer(folder, cfg.vocab_size)


def files(name: str, hf: Path, root: Path) -> dict:
    """Every file of one model; a file the tool refuses is said (its error), the others made."""
    out: dict = {}
    for folder, (precision, extra) in (COMMON | BUILDS.get(name, {})).items():
        try:
            out[folder] = L.build(hf, root / folder, precision, extra)
        except Exception as e:  # the builder refusing an option on this model type: said, not made
            out[folder] = f"FAIL {type(e).__name__}: {str(e)[:200]}"
    plain = L.export_plain(hf, root / "plain" / "model.onnx")
    out["plain_fp32"] = plain
    for folder, (algo, kw) in QUANTS.items():
        try:
            out[folder] = V.quant(plain, root / folder / "model.onnx", algo, **dict(kw))
        except Exception as e:
            out[folder] = f"FAIL {type(e).__name__}: {str(e)[:200]}"
    return out


def answers(hf: Path, made: dict, n: int, out: Path) -> dict:
    """`llm_files._answers` for the files made; a file ONNX Runtime cannot decode (or has no logits) said as such."""
    ok = {k: p for k, p in made.items() if isinstance(p, Path)}
    entry: dict = {"torch_tokens": None, "files": {}}
    for kind, path in ok.items():
        try:
            rec = L._answers(hf, {kind: path}, n, out)
        except Exception as e:  # the builder's exclude_lm_head file: hidden states, no logits
            entry["files"][kind] = {"error": f"{type(e).__name__}: {str(e)[:200]}", "first_flip": None}
            continue
        entry["torch_tokens"] = rec["torch_tokens"]
        entry["files"][kind] = rec["files"][kind]
    entry["refused"] = {k: v for k, v in made.items() if not isinstance(v, Path)}
    return entry


def make(out: Path, n: int, models=tuple(MODELS)) -> dict:
    return made_corpus(out, n, models, make_model, files)


def made_corpus(out: Path, n: int, models, make_model, files_of) -> dict:
    """Each model of `models`: its HF folder (`make_model(name, hf)`, kept where made), its files (`files_of(name,
    hf, root)`) and their right answers, written to OUT/answers.json as each is done (llm_newtypes.py's too)."""
    result: dict = {"versions": L.versions(), "prompt": L.PROMPT, "tokens": n, "models": {}}
    for name in models:
        hf = out / name / "hf"
        if not (hf / "config.json").is_file():
            make_model(name, hf)
        result["models"][name] = answers(hf, files_of(name, hf, out / name), n, out)
        L._write_answers(out, result)
        print(name, "done", flush=True)
    return result


def scorecard(result: dict) -> str:
    lines = []
    for model, entry in result["models"].items():
        for kind, rec in entry["files"].items():
            if "error" in rec:
                lines.append(f"{model:14} {kind:22} ERROR {rec['error'][:100]}")
            elif rec["first_flip"] is None:
                lines.append(f"{model:14} {kind:22} none")
            else:
                lines.append(f"{model:14} {kind:22} step {rec['first_flip']} {rec['torch_token']}->{rec['file_token']}"
                             f" margin {rec['torch_margin']:.3f} level-4 {rec.get('level4_nodes')} cures "
                             f"{rec.get('cured_by_level1_at')} flips alone {rec.get('flips_alone_at_level4')}")
        lines += [f"{model:14} {k:22} REFUSED {v[:100]}" for k, v in entry["refused"].items()]
    return "\n".join(lines)


def main() -> None:
    corpus_main(__doc__, MODELS, make)


def corpus_main(doc: str, models, make_corpus) -> None:
    """A corpus script's command line (OUT_DIR [--tokens N] [--models NAME...]): made, then its scorecard printed."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--models", nargs="*", default=list(models), choices=list(models))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(scorecard(make_corpus(args.out, args.tokens, args.models)))


if __name__ == "__main__":
    main()
