"""The stories issue 108 asked to hold, run side by side: each case a bisect, its exit, outcome, root cause and the
head of its hint, at one or more levels, on the CPU or a GPU.

    python benchmarks/verdict_stories.py [--device cpu|cuda] [--cases rtdetr,rtdetr_hf,llama_deep,...] [--out DIR]

Cases (models no one here tuned; random weights, no download):
  rtdetr / rtdetr_hf   HF RT-DETR, healthy, FP16: its encoder's top-k among near ties (tests/zoo), a decision
  llama_deep           a healthy 32-layer HF Llama, FP16 (tests/zoo/hf_models.build_llama_deep): within precision
  llama_deep_planted   the same with layer 20's q/k ×500: diverged inside layers.20
  text_planted         a QK^T overflow in a small text transformer (tests/zoo/models.build_text_planted)
  llama7b              a healthy 7 B Llama from a config (32 layers, hidden 4096, GQA 32/8), FP16 — a GPU's
On `--device cuda` the pair is `torch-cuda,ort-cuda-fp16` (onnxruntime-gpu: benchmarks/gpu_setup.sh), else
`torch,ort-cpu-fp16`. Figures: docs/measurements.md, "Issue 108".
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LLAMA_7B = '''
import torch


class _Logits(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, ids):
        return self.inner(input_ids=ids, use_cache=False).logits


def build():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                      intermediate_size=14336, vocab_size=32000, max_position_embeddings=256,
                      attn_implementation="eager")
    return _Logits(LlamaForCausalLM(cfg).eval()).eval(), (torch.randint(0, 32000, (1, 32)),)
'''

CASES = {  # name: (--torch target, levels)
    "rtdetr": ("tests/zoo/hf_models.py:build_rtdetr", (None,)),
    "rtdetr_hf": ("tests/zoo/rtdetr_variants.py:build_rtdetr_hf_init", (None,)),
    "llama_deep": ("tests/zoo/hf_models.py:build_llama_deep", (None,)),
    "llama_deep_planted": ("tests/zoo/hf_models.py:build_llama_deep_planted", (None, "all")),
    "text_planted": ("tests/zoo/models.py:build_text_planted", (None, "all")),
    "llama7b": ("{tmp}/llama7b.py:build", (None,)),
}


def run_case(name: str, target: str, level: str | None, backends: str, out: Path) -> dict:
    report = out / f"{name}{'-' + level if level else ''}.json"
    cmd = [sys.executable, "-m", "cp_debug.cli.main", "bisect", "--torch", target, "-b", backends, "--json",
           str(report), *(["--level", level] if level else [])]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    row = {"case": name, "level": level or "default", "exit": proc.returncode, "wall_s": round(wall, 1)}
    if not report.is_file():
        row["error"] = (proc.stderr.strip().splitlines() or ["(no output)"])[-1][:200]
        return row
    doc = json.loads(report.read_text())
    label = doc["candidates"][-1]
    root = (doc.get("root_cause") or {}).get(label) or {}
    row.update(outcome=doc["outcomes"][label], root=root.get("probe"), module=root.get("module"),
               hint=(root.get("hint") or "")[:160], reason=(doc["outcome_reasons"][label] or "")[:200],
               findings=[f["fault"] for f in (doc.get("findings") or {}).get(label, [])])
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--cases", default="rtdetr,rtdetr_hf,llama_deep,llama_deep_planted,text_planted")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    backends = "torch-cuda,ort-cuda-fp16" if args.device == "cuda" else "torch,ort-cpu-fp16"
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        (Path(tmp) / "llama7b.py").write_text(LLAMA_7B)
        if args.device == "cuda":
            import torch

            print(f"device: {torch.cuda.get_device_name(0)}", flush=True)
        for name in args.cases.split(","):
            target, levels = CASES[name]
            for level in levels:
                row = run_case(name, target.format(tmp=tmp), level, backends, out)
                print(json.dumps(row, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
