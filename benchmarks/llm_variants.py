"""Variants of the LLM corpus not covered by `llm_files.py` (issue 116, s6): MatMulNBitsQuantizer's other algorithms
and formats (HQQ, k-quant, DEFAULT symmetric / asymmetric at blocks 16 and 128, QDQ blockwise DequantizeLinear, GPTQ
on random calibration ids), the builder's options (accuracy_level 2, is_symmetric=false, block_size 16 / 128,
op_types_to_quantize=MatMul/Gather, algo_config=k_quant, int8 asymmetric, fp16 on the CPU, exclude_lm_head,
exclude_embeds) on the corpus's Llama and massive-channel Qwen3, and four architectures more (a SmolLM-like Llama
with llama3 rope scaling and tied embeddings, Granite with its multipliers, OLMo with clip_qkv, a tied Qwen3), each
as the builder's FP32 and INT4 files and an RTN INT4 file of its plain export. Run in the builder's venv:

    /tmp/genai-venv/bin/python benchmarks/llm_variants.py quant|build|arch|more   # the files, under /tmp/s6/v
    /tmp/genai-venv/bin/python benchmarks/llm_variants.py answers MODEL...  # 16 greedy tokens against PyTorch's

(the corpus first: `llm_files.py /tmp/llm_corpus`). The answers: each file's first flipped step against PyTorch's
tokens and, where one flips with level-4 MatMulNBits, the nodes whose level 1 alone cures it and those that alone
flip it (`llm_files.node_answers`); `answers` writes /tmp/s6/answers_MODELS.json.
"""
import os
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import llm_files as L  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402

OUT = Path(os.environ.get("LLM_VARIANTS", "/tmp/s6/v"))
CORP = Path("/tmp/llm_corpus")


def quant(plain, path, algo, **kw):
    from onnxruntime.quantization import matmul_nbits_quantizer as M
    from onnxruntime.quantization.quant_utils import QuantFormat
    if path.is_file():
        return path
    qf = kw.pop("quant_format", None)
    bs = kw.pop("block_size", 32)
    sym = kw.pop("is_symmetric", True)
    lvl = kw.pop("accuracy_level", None)
    axes = kw.pop("quant_axes", None)
    if algo == "hqq":
        conf = M.HQQWeightOnlyQuantConfig(block_size=bs, bits=4)
    elif algo == "kquant":
        conf = M.KQuantWeightOnlyQuantConfig()
    elif algo == "default":
        conf = M.DefaultWeightOnlyQuantConfig(block_size=bs, is_symmetric=sym, accuracy_level=lvl,
                                              quant_format=QuantFormat.QDQ if qf == "qdq" else QuantFormat.QOperator,
                                              quant_axes=axes)
    elif algo == "rtn":
        conf = M.RTNWeightOnlyQuantConfig()
    elif algo == "gptq":
        from onnxruntime.quantization import CalibrationDataReader

        class R(CalibrationDataReader):
            def __init__(self):
                rng = np.random.default_rng(0)
                self.d = iter([{"input_ids": rng.integers(0, 256, (1, 8)).astype(np.int64)} for _ in range(4)])

            def get_next(self):
                return next(self.d, None)
        conf = M.GPTQWeightOnlyQuantConfig(calibration_data_reader=R(), block_size=bs)
    q = M.MatMulNBitsQuantizer(onnx.load(str(plain)), block_size=bs, is_symmetric=sym, accuracy_level=lvl,
                               algo_config=conf, quant_format=QuantFormat.QDQ if qf == "qdq" else QuantFormat.QOperator,
                               quant_axes=axes)
    q.process()
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(q.model.model, str(path))
    return path


QUANTS = {
    "hqq_b32": ("hqq", dict(block_size=32)),
    "hqq_b64": ("hqq", dict(block_size=64)),
    "kquant": ("kquant", dict()),
    "default_asym_b128_l4": ("default", dict(block_size=128, is_symmetric=False, accuracy_level=4)),
    "default_sym_b16_l4": ("default", dict(block_size=16, is_symmetric=True, accuracy_level=4)),
    # ORT 1.32 refuses this one itself ("cannot reshape array of size 32 into shape (64,newaxis)"): said, not made
    "rtn_b64_asym_l4": ("rtn", dict(block_size=64, is_symmetric=False, accuracy_level=4)),
    "qdq_b32_axis0": ("default", dict(block_size=32, quant_format="qdq")),
    "qdq_b32_axis1": ("default", dict(block_size=32, quant_format="qdq", quant_axes=(("MatMul", 1),))),
    "qdq_b16_asym": ("default", dict(block_size=16, is_symmetric=False, quant_format="qdq")),
    "gptq_b32": ("gptq", dict(block_size=32)),
}
BUILDS = {
    "b_level2": ("int4", {"accuracy_level": "2"}),
    "b_asym": ("int4", {"is_symmetric": "false"}),
    "b_block16": ("int4", {"block_size": "16"}),
    "b_block128": ("int4", {"block_size": "128"}),
    "b_gather": ("int4", {"op_types_to_quantize": "MatMul/Gather"}),
    "b_kquant": ("int4", {"algo_config": "k_quant"}),
    "b_int8_asym": ("int8", {"is_symmetric": "false"}),
    "b_fp16": ("fp16", None),
    "b_excl_lm_head": ("int4", {"exclude_lm_head": "true"}),
    "b_excl_embeds": ("int4", {"exclude_embeds": "true"}),
}


# s7: the builder's model types not tried before (Phi-2's parallel block and LayerNorm, Gemma 3's q/k norms and local
# rotary base, SmolLM3's layers without rotary, Nemotron's LayerNorm1P and relu², ERNIE 4.5, HunYuan's q/k norms)
MORE = {
    # a rotary half of 16 (ORT's GroupQueryAttention wants the cos cache a multiple of 8 wide: head 32, not 16)
    "phi2": ("PhiConfig", "PhiForCausalLM", {"partial_rotary_factor": 0.5, "num_attention_heads": 2}),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", {"head_dim": 16, "sliding_window": 4,
                                                          "layer_types": ["sliding_attention", "full_attention"]}),
    "smollm3": ("SmolLM3Config", "SmolLM3ForCausalLM", {"no_rope_layers": [1, 0], "tie_word_embeddings": False}),
    "nemotron": ("NemotronConfig", "NemotronForCausalLM", {"partial_rotary_factor": 0.5, "head_dim": 32,
                                                            "num_attention_heads": 2}),
    "ernie45": ("Ernie4_5Config", "Ernie4_5ForCausalLM", {"head_dim": 16}),
    "hunyuan": ("HunYuanDenseV1Config", "HunYuanDenseV1ForCausalLM", {"head_dim": 16}),
}


def new_archs(specs=None):
    import torch
    import transformers
    base = dict(L.SMALL)
    specs = specs or {
        "smollm_llama3": ("LlamaConfig", "LlamaForCausalLM", {"tie_word_embeddings": True, "rope_scaling": {
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64}, "rope_theta": 500000.0}),
        "granite": ("GraniteConfig", "GraniteForCausalLM", {"embedding_multiplier": 12.0, "residual_multiplier": 0.22,
                                                          "attention_multiplier": 0.0625, "logits_scaling": 8.0}),
        "olmo": ("OlmoConfig", "OlmoForCausalLM", {"clip_qkv": 8.0}),
        "qwen3_tied": ("Qwen3Config", "Qwen3ForCausalLM", {"tie_word_embeddings": True, "head_dim": 16}),
    }
    out = {}
    for name, (c, m, extra) in specs.items():
        hf = OUT / name / "hf"
        if not (hf / "config.json").is_file():
            torch.manual_seed(5)
            cfg = getattr(transformers, c)(**(base | extra))
            model = getattr(transformers, m)(cfg).eval()
            with torch.no_grad():
                for n, p in model.named_parameters():  # biases and norm weights drawn too, so that they matter
                    if n.endswith("bias") or ("norm" in n and specs is MORE):
                        p.add_(torch.randn_like(p) * (0.05 if n.endswith("bias") else 0.1))
                if not cfg.tie_word_embeddings:
                    L._bigram(model, torch.Generator().manual_seed(5), L.ALPHA)
                else:
                    model.model.embed_tokens.weight.mul_(8.0)
            model.save_pretrained(hf)
            L._tokenizer(hf, cfg.vocab_size)
        out[name] = hf
    return out


def answers(models: list[str], n: int = 16) -> dict:
    """Each variant file's greedy tokens against PyTorch's (see the module); files whose folder starts with $PFX."""
    import json

    out: dict = {}
    for m in models:
        hf = CORP / m / "hf" if (CORP / m / "hf").is_dir() else OUT / m / "hf"
        ref, margins = L.torch_greedy(hf, n)
        out[m] = {"torch": ref}
        for d in sorted(p for p in (OUT / m).iterdir() if (p / "model.onnx").is_file()
                        and p.name.startswith(os.environ.get("PFX", ""))):
            try:
                toks = L.ort_greedy(d / "model.onnx", n)
            except Exception as e:  # the file ONNX Runtime cannot decode (the builder's FP16 CPU file)
                out[m][d.name] = f"ERR {type(e).__name__} {str(e)[:150]}"
                continue
            s = L.first_flip(toks, ref)
            rec: dict = {"first_flip": s}
            if s is not None:
                rec.update(swap=f"{ref[s]}->{toks[s]}", margin=round(margins[s], 3))
                if L.level4_nodes(onnx.load(str(d / "model.onnx"))):
                    rec.update(L.node_answers(d / "model.onnx", ref, n))
            out[m][d.name] = rec
            print(m, d.name, rec, flush=True)
    path = Path(f"/tmp/s6/answers_{'_'.join(models)}{os.environ.get('PFX', '')}.json")
    path.write_text(json.dumps(out, indent=1))
    return out


def main():
    what = sys.argv[1]
    res = {}
    if what == "answers":
        answers(sys.argv[2:] or ["llama", "qwen3_massive"])
        return
    if what == "quant":
        for m in ("llama", "qwen3_massive"):
            plain = CORP / m / "plain" / "model.onnx"
            for k, (algo, kw) in QUANTS.items():
                try:
                    quant(plain, OUT / m / k / "model.onnx", algo, **dict(kw))
                    res[f"{m}/{k}"] = "ok"
                except Exception as e:  # the tool refusing an option: said, the others made
                    res[f"{m}/{k}"] = f"FAIL {type(e).__name__}: {str(e)[:200]}"
                print(m, k, res[f"{m}/{k}"], flush=True)
    elif what == "build":
        for m in ("llama", "qwen3_massive"):
            hf = CORP / m / "hf"
            for k, (p, extra) in BUILDS.items():
                try:
                    L.build(hf, OUT / m / k, p, extra)
                    res[f"{m}/{k}"] = "ok"
                except Exception as e:
                    res[f"{m}/{k}"] = f"FAIL {e}"
                print(m, k, res[f"{m}/{k}"], flush=True)
    elif what in ("arch", "more"):
        for name, hf in new_archs(MORE if what == "more" else None).items():
            for k, p in (("fp32", "fp32"), ("int4", "int4")):
                try:
                    L.build(hf, OUT / name / k, p)
                    res[f"{name}/{k}"] = "ok"
                except Exception as e:
                    res[f"{name}/{k}"] = f"FAIL {e}"
                print(name, k, res[f"{name}/{k}"], flush=True)
            try:
                plain = L.export_plain(hf, OUT / name / "plain" / "model.onnx")
                L.rtn_int4(plain, OUT / name / "rtn_int4_level4" / "model.onnx", 4)
                print(name, "plain+rtn ok", flush=True)
            except Exception as e:
                print(name, "plain FAIL", type(e).__name__, str(e)[:300], flush=True)


if __name__ == "__main__":
    main()
