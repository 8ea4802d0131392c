"""Pre-quantized checkpoints made by hand, built by ONNX Runtime GenAI's builder (issue 116, s10).

Users build `-p int4 -e cpu` files from AutoGPTQ / AutoAWQ checkpoints: a folder whose config.json holds a
`quantization_config` and whose projections are `qweight` / `qzeros` / `scales` (and GPTQ's `g_idx`). The builder
(`onnxruntime_genai/models/loaders/gptq.py`, `awq.py`) repacks them into MatMulNBits, keeping `g_idx` as the node's
5th input where the config says `desc_act` (act-order: the groups follow a permutation of K). Here the corpus's tiny
Llama and massive-channel Qwen3 are quantized by hand in those layouts (round to nearest per group of 32, GPTQ's
symmetric zero point 8 stored minus one, AWQ's asymmetric one in its column order; act-order's groups over a seeded
permutation of K), built, and decoded against the float model (the right answers, without cp_debug):

    /tmp/genai-venv/bin/python benchmarks/llm_prequant.py OUT_DIR [--tokens 16]

OUT_DIR/MODEL/{hf, gptq_hf, gptq_act_hf, awq_hf} and their builds {fp32, gptq, gptq_act, awq}; answers_prequant.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llm_files  # noqa: E402

GROUP = 32
PROJ = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
        "mlp.up_proj", "mlp.down_proj")
AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


def _pack_k(q: np.ndarray) -> np.ndarray:
    """[K, N] 4-bit levels → GPTQ's qweight int32 [K/8, N], 8 rows a word, the first in the low nibble."""
    q = q.astype(np.uint32).reshape(q.shape[0] // 8, 8, q.shape[1])
    return sum(q[:, j] << (4 * j) for j in range(8)).astype(np.uint32).view(np.int32)


def _pack_n(q: np.ndarray, order=range(8)) -> np.ndarray:
    """[R, N] 4-bit levels → int32 [R, N/8], 8 columns a word in `order` (AWQ's interleave)."""
    q = q.astype(np.uint32).reshape(q.shape[0], q.shape[1] // 8, 8)
    return sum(q[:, :, o] << (4 * j) for j, o in enumerate(order)).astype(np.uint32).view(np.int32)


def gptq_tensors(w: np.ndarray, act_order: bool, rng) -> tuple[dict, np.ndarray]:
    """GPTQ's tensors of a Linear weight `w` [N, K] (symmetric 4-bit, groups of GROUP; act-order: the groups over a
    permutation of K), and the float weight [K, N] they stand for (float16 scales, as stored)."""
    wt = w.T.astype(np.float64)  # [K, N]
    k, n = wt.shape
    perm = rng.permutation(k) if act_order else np.arange(k)
    g_idx = np.empty(k, np.int32)
    g_idx[perm] = np.arange(k) // GROUP
    groups = k // GROUP
    scale = np.empty((groups, n), np.float16)
    for g in range(groups):
        amax = np.abs(wt[g_idx == g]).max(axis=0)
        scale[g] = np.maximum(2.0 * amax / 15.0, 1e-8)
    s = scale.astype(np.float64)[g_idx]
    q = np.clip(np.round(wt / s) + 8, 0, 15).astype(np.int64)
    zp = np.full((groups, n), 8, np.int64)
    tensors = {"qweight": _pack_k(q), "qzeros": _pack_n(zp - 1), "scales": scale, "g_idx": g_idx}
    return tensors, ((q - 8) * s).astype(np.float32)


def awq_tensors(w: np.ndarray) -> tuple[dict, np.ndarray]:
    """AutoAWQ's GEMM tensors of `w` [N, K] (asymmetric 4-bit, groups of GROUP along K): qweight int32 [K, N/8] and
    qzeros [K/GROUP, N/8] in AWQ's column order, scales float16 [K/GROUP, N]; and the float weight [K, N]."""
    wt = w.T.astype(np.float64)
    k, n = wt.shape
    blocks = wt.reshape(k // GROUP, GROUP, n)
    lo, hi = blocks.min(axis=1), blocks.max(axis=1)
    scale = np.maximum((hi - lo) / 15.0, 1e-8).astype(np.float16)
    s = scale.astype(np.float64)
    zp = np.clip(np.round(-lo / s), 0, 15).astype(np.int64)
    q = np.clip(np.round(blocks / s[:, None]) + zp[:, None], 0, 15).astype(np.int64).reshape(k, n)
    deq = ((q.reshape(k // GROUP, GROUP, n) - zp[:, None]) * s[:, None]).reshape(k, n)
    tensors = {"qweight": _pack_n(q, AWQ_ORDER), "qzeros": _pack_n(zp, AWQ_ORDER), "scales": scale}
    return tensors, deq.astype(np.float32)


def make_checkpoint(hf: Path, out: Path, method: str, seed: int = 7) -> dict[str, np.ndarray]:
    """`out`: `hf`'s model with every layer projection in `method`'s tensors ("gptq", "gptq_act", "awq"); the
    embedding, norms and lm_head as they are (AutoGPTQ / AutoAWQ leave lm_head in float). Returns the float
    weights [K, N] each projection stands for, by name."""
    from safetensors.numpy import load_file, save_file

    out.mkdir(parents=True, exist_ok=True)
    weights = load_file(str(hf / "model.safetensors"))
    rng = np.random.default_rng(seed)
    stored, deq = {}, {}
    for name, t in weights.items():
        base = name.removesuffix(".weight")
        if name.endswith(".weight") and base.split("layers.", 1)[-1].split(".", 1)[-1] in PROJ:
            if method == "awq":
                parts, deq[base] = awq_tensors(t)
            else:
                parts, deq[base] = gptq_tensors(t, method == "gptq_act", rng)
            # C order: safetensors writes an array's buffer as it lies (a transposed view's columns as rows)
            stored.update({f"{base}.{k}": np.ascontiguousarray(v) for k, v in parts.items()})
        else:
            stored[name] = t.astype(np.float16) if t.dtype == np.float32 else t
    save_file(stored, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((hf / "config.json").read_text())
    cfg["dtype"] = "float16"
    if method == "awq":
        cfg["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": GROUP, "zero_point": True,
                                      "version": "gemm"}
    else:
        cfg["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": GROUP, "sym": True,
                                      "desc_act": method == "gptq_act", "true_sequential": True}
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    for f in hf.iterdir():
        if f.name not in ("config.json", "model.safetensors") and f.is_file():
            shutil.copy(f, out / f.name)
    return deq


def _hf(model: str, out: Path) -> Path:
    hf = out / model / "hf"
    if not (hf / "config.json").is_file():
        (llm_files.make_llama if model == "llama" else llm_files.make_qwen3_massive)(hf)
    return hf


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--models", default="llama,qwen3_massive")
    args = ap.parse_args()
    answers: dict = {"versions": llm_files.versions(), "prompt": llm_files.PROMPT, "tokens": args.tokens,
                     "models": {}}
    for model in args.models.split(","):
        hf = _hf(model, args.out)
        ref, margins = llm_files.torch_greedy(hf, args.tokens)
        llm_files.build(hf, args.out / model / "fp32", "fp32")
        files = {}
        for method in ("gptq", "gptq_act", "awq"):
            ck = args.out / model / f"{method}_hf"
            make_checkpoint(hf, ck, method)
            path = llm_files.build(ck, args.out / model / method, "int4")
            toks = llm_files.ort_greedy(path, args.tokens)
            flip = llm_files.first_flip(ref, toks)
            row = {"tokens": toks, "first_flip": flip}
            if flip is not None:
                row.update(torch_token=ref[flip], file_token=toks[flip], torch_margin=margins[flip])
                row.update(llm_files.node_answers(path, ref, args.tokens))
            files[method] = row
            print(model, method, "first flip", flip, {k: v for k, v in row.items() if k != "tokens"})
        answers["models"][model] = {"torch_tokens": ref, "files": files}
    (args.out / "answers_prequant.json").write_text(json.dumps(answers, indent=1))


if __name__ == "__main__":
    main()
