"""The corpus's HF folder (tests/data/llm/qwen3_massive/hf: the model ONNX Runtime GenAI's builder made the files of)
loaded as a `--torch` FILE.py:FUNC gives it: `AutoModelForCausalLM.from_pretrained(folder)` and its prompt."""

from __future__ import annotations

import json
from pathlib import Path

import torch

LLM = Path(__file__).resolve().parents[1] / "data" / "llm"


def qwen3_massive():
    from transformers import AutoModelForCausalLM

    prompt = json.loads((LLM / "answers.json").read_text())["prompt"]
    return AutoModelForCausalLM.from_pretrained(LLM / "qwen3_massive" / "hf").eval(), \
        {"input_ids": torch.tensor([prompt])}


def qwen2():
    """The Qwen2 of tests/data/llm/qwen2 (attention biases; `benchmarks/llm_files.py --others`) and the prompt."""
    from transformers import AutoModelForCausalLM

    prompt = json.loads((LLM / "answers_others.json").read_text())["prompt"]
    return AutoModelForCausalLM.from_pretrained(LLM / "qwen2" / "hf").eval(), {"input_ids": torch.tensor([prompt])}
