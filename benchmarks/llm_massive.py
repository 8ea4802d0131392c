"""The massive-activation model in two more of the builder's model types (issue 116, s9): Mistral and Phi-3 (the
HF model's fused `qkv_proj` / `gate_up_proj`), tiny configs (`llm_files.OTHER`) whose residual stream carries one
channel ~1000x the rest as `llm_files.make_qwen3_massive`'s (`llm_files._massive`). Each as the builder's FP32 and
INT4 files (`-p int4 -e cpu`: MatMulNBits at accuracy_level 4) and an RTN INT4 file (level 4) of its plain export,
with the right answers found without cp_debug (`llm_files._answers`: the first flipped greedy token against
PyTorch's, each level-4 node at level 1 alone, each alone at level 4). Run in the builder's venv:

    /tmp/genai-venv/bin/python benchmarks/llm_massive.py OUT_DIR [--tokens 32]

Writes OUT_DIR/answers.json (tests/data/llm/answers_massive.json) and prints the scorecard.
"""
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llm_files as L  # noqa: E402

MODELS = ("mistral", "phi3")


def make(out: Path, n: int, models=MODELS) -> dict:
    return L.make_models(out, n, {f"{name}_massive": partial(L.make_other, name, massive=True) for name in models})


if __name__ == "__main__":
    L.models_main(__doc__, make, MODELS)
