"""A mixture of experts as the builder makes it (issue 116, s13): a tiny GPT-OSS (`GptOssForCausalLM`: 4 experts,
top-2, attention sinks, sliding-window layer 0), the only MoE type ONNX Runtime GenAI's builder 0.18.0 builds for
the CPU (PhiMoE is CUDA only there; Qwen3.5-MoE, LFM2-MoE and Granite-MoE-hybrid are hybrids of other layers). Its
FP32 file holds one fused `MoE` op a layer (com.microsoft), its INT4 file `QMoE` (4-bit experts, block 32) and the
router, attention and lm_head as MatMulNBits at level 4. The builder's INT4 path reads the experts from OpenAI's
MXFP4 checkpoint layout only (`{experts}.gate_up_proj_blocks` / `_scales`, … "was not found" from a float one), so
the experts are written so here (`mxfp4`: E2M1 codes in blocks of 32, E8M0 scales), the float weights beside them
holding those values dequantized (the model's truth, as transformers dequantizes OpenAI's checkpoint). The right
answers are found without cp_debug (`llm_files._answers`: PyTorch's 16 greedy tokens against each file's; each
level-4 node at level 1 alone, and alone at 4 with the others at 1). Run in the builder's venv:

    /tmp/genai-venv/bin/python benchmarks/llm_moe.py OUT_DIR [--tokens 16]

Writes OUT_DIR/gptoss/{hf,fp32,int4} and OUT_DIR/answers.json (tests/data/llm/answers_moe.json).
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llm_files as L  # noqa: E402

CONFIG = ("GptOssConfig", "GptOssForCausalLM", {
    "intermediate_size": 64, "num_local_experts": 4, "num_experts_per_tok": 2, "head_dim": 16,
    "sliding_window": 4, "layer_types": ["sliding_attention", "full_attention"]})
E2M1 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def mxfp4(w):
    """w [E, N, K] (output-major) as MXFP4: blocks [E, N, K/32, 16] (two E2M1 codes a byte, the even one low),
    scales [E, N, K/32] (E8M0: 2^(s − 127), the block's max at most 6 × it), and the values they hold."""
    import torch

    table = torch.tensor(E2M1)
    e, n, k = w.shape
    b = w.reshape(e, n, k // 32, 32)
    exp = torch.ceil(torch.log2(b.abs().amax(-1).clamp_min(1e-30) / 6.0)).clamp(-127, 127)
    x = b / torch.pow(2.0, exp)[..., None]
    code = (x.abs()[..., None] - table).abs().argmin(-1).to(torch.uint8) | ((x < 0).to(torch.uint8) << 3)
    deq = torch.where((code & 8) != 0, -1.0, 1.0) * table[(code & 7).long()] * torch.pow(2.0, exp)[..., None]
    blocks = (code[..., 0::2] & 0x0F) | ((code[..., 1::2] & 0x0F) << 4)
    return blocks.contiguous(), (exp + 127).to(torch.uint8).contiguous(), deq.reshape(e, n, k)


def make(hf: Path) -> None:
    """The tiny GPT-OSS (`llm_files.make_other`: lm_head leaning towards a next-token permutation), its experts
    then written as MXFP4 beside their dequantized float weights."""
    from safetensors.torch import load_file, save_file

    L.OTHER["gptoss"] = CONFIG
    raw = hf.parent / "hf_float"
    L.make_other("gptoss", raw)
    shutil.copytree(raw, hf, dirs_exist_ok=True)
    shutil.rmtree(raw)
    tensors = load_file(str(hf / "model.safetensors"))
    for key in [k for k in tensors if k.endswith(("mlp.experts.gate_up_proj", "mlp.experts.down_proj"))]:
        w = tensors[key].float().transpose(-1, -2).contiguous()  # HF input-major [E, K, N]
        tensors[key + "_blocks"], tensors[key + "_scales"], deq = mxfp4(w)
        tensors[key] = deq.transpose(-1, -2).contiguous().to(tensors[key].dtype)
    save_file(tensors, str(hf / "model.safetensors"), metadata={"format": "pt"})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--tokens", type=int, default=16)
    args = ap.parse_args()
    root = args.out / "gptoss"
    hf = root / "hf"
    if not (hf / "config.json").is_file():
        make(hf)
    files = {p: L.build(hf, root / p, p) for p in ("fp32", "int4")}
    for p in files:
        shutil.rmtree(root / p / "cache", ignore_errors=True)
    answers = {"versions": L.versions(), "prompt": L.PROMPT, "tokens": args.tokens,
               "models": {"gptoss": L._answers(hf, files, args.tokens, args.out)}}
    (args.out / "answers.json").write_text(json.dumps(answers, indent=1))
    print(L.scorecard(answers))


if __name__ == "__main__":
    main()
