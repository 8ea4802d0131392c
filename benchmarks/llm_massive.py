"""The massive-activation model in two more of the builder's model types (issue 116, s9): Mistral and Phi-3 (the
HF model's fused `qkv_proj` / `gate_up_proj`), tiny configs (`llm_files.OTHER`) whose residual stream carries one
channel ~1000x the rest as `llm_files.make_qwen3_massive`'s (`llm_files._massive`). Each as the builder's FP32 and
INT4 files (`-p int4 -e cpu`: MatMulNBits at accuracy_level 4) and an RTN INT4 file (level 4) of its plain export,
with the right answers found without cp_debug (`llm_files._answers`: the first flipped greedy token against
PyTorch's, each level-4 node at level 1 alone, each alone at level 4). Run in the builder's venv:

    /tmp/genai-venv/bin/python benchmarks/llm_massive.py OUT_DIR [--tokens 32]

Writes OUT_DIR/answers.json (tests/data/llm/answers_massive.json) and prints the scorecard.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llm_files as L  # noqa: E402

MODELS = ("mistral", "phi3")


def make(out: Path, n: int, models=MODELS) -> dict:
    answers: dict = {"versions": L.versions(), "prompt": L.PROMPT, "tokens": n, "models": {}}
    for name in models:
        tag = f"{name}_massive"
        hf = out / tag / "hf"
        if not (hf / "config.json").is_file():
            L.make_other(name, hf, massive=True)
        answers["models"][tag] = L._answers(hf, L.four_files(hf, out / tag), n, out)
        L._write_answers(out, answers)
    return answers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(L.scorecard(make(args.out, args.tokens, args.models)))


if __name__ == "__main__":
    main()
