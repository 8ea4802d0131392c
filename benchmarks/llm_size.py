"""Issue 116 item 5: a bisect of an LLM of 0.5 B parameters against its floor, from a config, on the CPU.

Make the files in ONNX Runtime GenAI's venv (`benchmarks/llm_files.py` says how to make it), then measure with the
project's Python:

    /tmp/genai-venv/bin/python benchmarks/llm_size.py make /tmp/llm_size            # HF folder, FP32 and INT4 files
    python benchmarks/llm_size.py measure /tmp/llm_size [--generate 8] [--step floor|bisect|both]

`make`: a Qwen2.5-0.5B-shaped config (hidden 896, 24 layers, 14 heads / 2 KV heads, intermediate 4864, vocab
151936, tied embeddings; random weights, nothing downloaded; `--vocab` to shrink it) saved as an HF folder, and the
builder's files `fp32/` (`-p fp32 -e cpu`) and `int4/` (`-p int4 -e cpu`: MatMulNBits at accuracy_level 4), and
`prompt.npz` (8 token ids). A folder made already is kept. The files stay out of the repository (under OUT).

`measure`: two child processes on these files, one after the other (each row: wall, peak RSS and CPU seconds from
wait4, exit; on shared cores the CPU seconds move less with the others' load than the wall):
  floor   what any tool must do at least: load each file in ONNX Runtime, one forward of the prompt with each and
          N greedy steps each with its KV cache (N = the bisect's --generate);
  bisect  `cpdebug bisect --onnx OUT/fp32/model.onnx -b ort,ort@OUT/int4 --inputs OUT/prompt.npz --generate N
          --json OUT/bisect.json` with a fresh cache folder;
then the ratios bisect ÷ floor (wall, RSS and CPU), the bisect's outcome and the probes mapped.
`--bytecode`: cp_debug's modules compiled to bytecode first (`compileall`, as `pip install` writes it for the package
it installs), so the bisect imports them as the floor imports numpy and onnxruntime; without it, a checkout run with
PYTHONDONTWRITEBYTECODE set (this machine's) compiles cp_debug's ~227 modules from source in every run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QWEN25_05B = {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
              "intermediate_size": 4864, "vocab_size": 151936, "tie_word_embeddings": True,
              "max_position_embeddings": 4096, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6}
PROMPT = [17, 101, 42, 7, 199, 64, 3, 250]
CPDEBUG = [sys.executable, "-m", "cp_debug.cli.main"]


def make(out: Path, vocab: int) -> None:
    """The HF folder from the config and the builder's FP32 and INT4 files (run in the builder's venv)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from llm_files import _tokenizer, build

    hf = out / "hf"
    if not (hf / "config.json").is_file():
        import torch
        from transformers import Qwen2Config, Qwen2ForCausalLM

        torch.manual_seed(0)
        cfg = Qwen2Config(**{**QWEN25_05B, "vocab_size": vocab}, bos_token_id=2, eos_token_id=1, pad_token_id=0)
        model = Qwen2ForCausalLM(cfg).eval()
        print(f"parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.0f} M", flush=True)
        model.save_pretrained(hf)
        _tokenizer(hf, vocab)
        del model
    for precision in ("fp32", "int4"):
        t0 = time.perf_counter()
        build(hf, out / precision, precision)
        print(f"builder -p {precision}: {time.perf_counter() - t0:.0f} s", flush=True)
    import numpy as np

    np.savez(out / "prompt.npz", input_ids=np.array([PROMPT], np.int64))


FLOOR = '''
import json, sys, time
import numpy as np
import onnxruntime as ort
t0 = time.perf_counter()
out, n = sys.argv[1], int(sys.argv[2])
prompt = [int(t) for t in np.load(out + "/prompt.npz")["input_ids"].reshape(-1)]
head = json.load(open(out + "/fp32/genai_config.json"))["model"]["decoder"]["head_size"]
tokens = {}
for kind in ("fp32", "int4"):
    so = ort.SessionOptions(); so.log_severity_level = 3
    sess = ort.InferenceSession(out + "/" + kind + "/model.onnx", so, providers=["CPUExecutionProvider"])
    ins = {i.name: i for i in sess.get_inputs()}
    outs = [o.name for o in sess.get_outputs()]
    past = [k for k in ins if k.startswith("past_key_values")]
    cache = {k: np.zeros((1, ins[k].shape[1], 0, head), np.float32) for k in past}
    seq, step, toks = list(prompt), list(prompt), []
    for _ in range(n + 1):  # the prompt's forward, then N greedy steps
        feed = {"input_ids": np.array([step], np.int64), "attention_mask": np.ones((1, len(seq)), np.int64), **cache}
        if "position_ids" in ins:
            feed["position_ids"] = np.arange(len(seq) - len(step), len(seq), dtype=np.int64)[None]
        res = dict(zip(outs, sess.run(outs, feed)))
        t = int(np.argmax(res["logits"][0, -1]))
        toks.append(t); seq.append(t); step = [t]
        cache = {k: res[k.replace("past_key_values", "present")] for k in past}
    tokens[kind] = toks
    del sess
print(json.dumps({"wall": time.perf_counter() - t0, "tokens": tokens}))
'''


CPU_S: dict[str, float] = {}  # a child's CPU seconds (user + system, from wait4) by its log's name


def child(cmd: list[str], env: dict, log: Path) -> tuple[float, float, int, str]:
    """(wall s, peak RSS GB from wait4, exit code, stdout) of `cmd` as a child process, its stderr into `log`; its CPU
    seconds in `CPU_S` (on shared cores the wall moves with the others' load, the CPU seconds much less)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0)
        text = out.read()
    CPU_S[log.name] = usage.ru_utime + usage.ru_stime
    return wall, usage.ru_maxrss / 1e6, os.waitstatus_to_exitcode(status), text


def probes_mapped(report: dict) -> str:
    """'mapped of all' from the bisect's JSON report: the candidate's results that are not `missing`."""
    for rows in (report.get("results") or {}).values():
        missing = sum(1 for r in rows if r.get("status") == "missing")
        return f"{len(rows) - missing} of {len(rows)}"
    return "-"


def measure(out: Path, n: int, step: str, bytecode: bool = False) -> None:
    env = {**os.environ, "CPDEBUG_CACHE_DIR": str(out / "cache")}
    if bytecode:  # beside each module, where the imports look (`compileall` writes it whatever the environment says)
        subprocess.run([sys.executable, "-c", "import compileall, os, cp_debug; "
                        "compileall.compile_dir(os.path.dirname(cp_debug.__file__), quiet=1)"], env=env, check=True)
    kept = out / f"floor_{n}.json"
    print(f"{os.uname().machine}, {os.cpu_count()} cores; --generate {n}")
    if step != "bisect":
        (out / "floor.py").write_text(FLOOR)
        fw, frss, fcode, fout = child(["nice", sys.executable, str(out / "floor.py"), str(out), str(n)], env,
                                      out / "floor.log")
        floor = json.loads(fout.strip().splitlines()[-1]) if fcode == 0 else {}
        fcpu = CPU_S["floor.log"]
        kept.write_text(json.dumps({**floor, "child_wall": fw, "rss": frss, "exit": fcode, "cpu": fcpu}))
        print(f"floor   exit {fcode}  {fw:7.1f} s  {frss:6.2f} GB  cpu {fcpu:6.1f} s  tokens {floor.get('tokens')}",
              flush=True)
        if step == "floor":
            return
    floor = json.loads(kept.read_text())
    fw, frss = floor["child_wall"], floor["rss"]
    shutil.rmtree(env["CPDEBUG_CACHE_DIR"], ignore_errors=True)
    report = out / f"bisect_{n}.json"
    report.unlink(missing_ok=True)
    bw, brss, bcode, _ = child(["nice", *CPDEBUG, "bisect", "--onnx", str(out / "fp32" / "model.onnx"), "-b",
                                f"ort,ort@{out / 'int4'}", "--inputs", str(out / "prompt.npz"), "--generate", str(n),
                                "--json", str(report)], env, out / f"bisect_{n}.log")
    rep = json.loads(report.read_text()) if report.is_file() else {}
    bcpu = CPU_S[f"bisect_{n}.log"]
    print(f"bisect  exit {bcode}  {bw:7.1f} s  {brss:6.2f} GB  cpu {bcpu:6.1f} s  outcome {rep.get('outcome')}  "
          f"probes mapped {probes_mapped(rep)}", flush=True)
    cpu = f", cpu {bcpu / floor['cpu']:.2f}x" if floor.get("cpu") else ""
    print(f"ratio bisect ÷ floor: wall {bw / fw:.2f}x, peak RSS {brss / frss:.2f}x{cpu} (target ≤ 1.5x)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="the HF folder and the builder's files (in the builder's venv)")
    mk.add_argument("out", type=Path)
    mk.add_argument("--vocab", type=int, default=QWEN25_05B["vocab_size"])
    ms = sub.add_parser("measure", help="the floor and the bisect, back to back")
    ms.add_argument("out", type=Path)
    ms.add_argument("--generate", type=int, default=8)
    ms.add_argument("--step", default="both", choices=("both", "floor", "bisect"))
    ms.add_argument("--bytecode", action="store_true", help="cp_debug compiled to bytecode first, as pip installs it")
    args = ap.parse_args()
    if args.cmd == "make":
        make(args.out, args.vocab)
    else:
        measure(args.out, args.generate, args.step, args.bytecode)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
