"""Hybrid decoders as the builder makes them (issue 116, s14): a tiny LFM2 (`Lfm2ForCausalLM`: layer 0 a gated short
convolution whose state is a cache input of its own, `past.0.conv`, beside layer 1's attention with q/k norms) and a
tiny Granite-4 without experts (`GraniteMoeHybridForCausalLM`, `num_local_experts` 0), random weights (lm_head
leaning towards a next-token permutation, `llm_files.make_other`), each as the builder's FP32 and INT4 files and an
RTN INT4 file (level 4) of its plain export. The builder 0.18.0 builds no Mamba layer (its GraniteMoeHybrid model
reads every layer's `self_attn`: "'NoneType' object has no attribute 'q_proj'"), so the Granite-4 here is
attention-only (as granite-4.0-micro); its files wire lm_head to layer 0's post-attention norm, not the final norm
(`lm_head_reads` in the answers). The right answers are found without cp_debug (`llm_files._answers`: PyTorch's 16
greedy tokens against each file's; each level-4 node at level 1 alone, and alone at 4 with the others at 1). Run
in the builder's venv:

    /tmp/genai-venv/bin/python benchmarks/llm_hybrid.py OUT_DIR [--tokens 16] [--models lfm2 granite4]

Writes OUT_DIR/MODEL/{hf,fp32,int4,plain,rtn_int4_level4} and OUT_DIR/answers.json
(tests/data/llm/answers_hybrid.json).
"""
import argparse
import json
import shutil
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llm_files as L  # noqa: E402
import onnx  # noqa: E402

CONFIGS = {
    "lfm2": ("Lfm2Config", "Lfm2ForCausalLM", {
        "layer_types": ["conv", "full_attention"], "norm_eps": 1e-5, "conv_L_cache": 3, "block_multiple_of": 32,
        "block_auto_adjust_ff_dim": False, "block_ff_dim": 128, "eos_token_id": 1, "bos_token_id": 2}),
    "granite4": ("GraniteMoeHybridConfig", "GraniteMoeHybridForCausalLM", {
        "layer_types": ["attention", "attention"], "num_local_experts": 0, "shared_intermediate_size": 128,
        "mamba_n_heads": 4, "mamba_n_groups": 1, "mamba_d_state": 16, "mamba_d_head": 32, "mamba_d_conv": 4,
        "mamba_expand": 2, "mamba_chunk_size": 16, "position_embedding_type": "rope"}),
}


def rewired(path: Path) -> tuple[str, Path | None]:
    """What the builder's lm_head reads, and where that is not the final norm's output, the file with lm_head
    reading it (`FOLDER_fixed/model.onnx` beside the builder's folder, genai_config.json copied)."""
    model = onnx.load(str(path))
    head = next(n for n in model.graph.node if n.name.startswith("/lm_head/MatMul"))
    final = next(n.output[0] for n in model.graph.node if "final_norm_layernorm" in n.name)
    reads = head.input[0]
    if reads == final:
        return reads, None
    head.input[0] = final
    nodes = [n for n in model.graph.node if n is not head]  # lm_head after the final norm (topological order)
    kept = onnx.NodeProto()
    kept.CopyFrom(head)
    del model.graph.node[:]
    model.graph.node.extend([*nodes, kept])
    out = path.parent.with_name(path.parent.name + "_fixed")
    out.mkdir(exist_ok=True)
    shutil.copy(path.parent / "genai_config.json", out / "genai_config.json")
    onnx.save(model, str(out / "model.onnx"), save_as_external_data=True, location="model.onnx.data")
    return reads, out / "model.onnx"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--models", nargs="*", default=list(CONFIGS))
    args = ap.parse_args()
    path = args.out / "answers.json"  # a model made before kept (`--models` one at a time)
    answers = json.loads(path.read_text()) if path.is_file() else {}
    answers = {"models": {}, "refused": {}} | answers | {"versions": L.versions(), "prompt": L.PROMPT,
                                                         "tokens": args.tokens}
    for name in args.models:
        L.OTHER[name] = CONFIGS[name]
        root = args.out / name
        hf = root / "hf"
        if not (hf / "config.json").is_file():
            L.make_other(name, hf)
        files = {}
        for p in ("fp32", "int4"):
            try:
                files[p] = L.build(hf, root / p, p)
            except Exception as e:  # the builder refusing the model type: said, the others made
                answers["refused"][f"{name}/{p}"] = f"{type(e).__name__}: {str(e)[:300]}"
                print(name, p, "REFUSED", answers["refused"][f"{name}/{p}"], flush=True)
            shutil.rmtree(root / p / "cache", ignore_errors=True)
        try:
            plain = L.export_plain(hf, root / "plain" / "model.onnx")
            files["rtn_int4_level4"] = L.rtn_int4(plain, root / "rtn_int4_level4" / "model.onnx", 4)
            files["plain_fp32"] = plain
        except Exception as e:
            answers["refused"][f"{name}/plain"] = f"{type(e).__name__}: {str(e)[:300]}"
            traceback.print_exc()
        answers["models"][name] = L._answers(hf, files, args.tokens, args.out)
        for p in ("fp32", "int4"):  # what the builder's lm_head reads (Granite-4: layer 0's post-attention norm)
            if p in files:
                rec = answers["models"][name]["files"][p]
                rec["lm_head_reads"], fixed = rewired(files[p])
                if fixed is not None:  # the cure by hand: lm_head reading the final norm, decoded again
                    rec["lm_head_on_final_norm_first_flip"] = L.first_flip(
                        L.ort_greedy(fixed, args.tokens), answers["models"][name]["torch_tokens"])
        path.write_text(json.dumps(answers, indent=1))
    print(L.scorecard(answers))


if __name__ == "__main__":
    main()
