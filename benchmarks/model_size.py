"""Issue 83's measure: what a bisect costs against the size of the model, beside the floor, in one run.

    python benchmarks/model_size.py [--sizes 10m,130m,emb2g] [--device cpu|cuda] [--out DIR] [--keep]
    python benchmarks/model_size.py --path [--out DIR]     # the user's whole path on a 2.2 GB model (CPU)
    python benchmarks/model_size.py --sizes 7b --device cuda --out DIR --step floor   # then --step bisect, same DIR

`--step floor|bisect`: one child of the pair (a 7 B model's floor and bisect each take most of a GPU machine's
10-minute call); the floor's wall is kept in DIR and the bisect's row reads it.

For each size a model file is written (`FILE.py:build`, random weights from a config, nothing downloaded) and two
child processes run on it, one after the other:
  floor   build, one torch forward, `torch.onnx.export(dynamo=True)` (weights as external data past 2 GiB, as torch
          writes them), one ONNX Runtime run of the FP16 conversion's input graph: what any tool must do at least;
  bisect  `cpdebug bisect --torch FILE.py:build -b REF,CAND --json` (CPU: torch,ort-cpu-fp16; CUDA:
          torch-cuda,ort-cuda-fp16) with a fresh cache folder.
Each row: wall time and the child's peak host RSS (wait4), the bisect's exit code and outcome, the ratios to the
floor; on CUDA the card's name and the peak GPU memory of the floor (torch's allocator) beside them.
Sizes: `10m`, `130m`, `135m8` (8 layers × 1024), `135m30` (30 layers × 576, as SmolLM-135M is shaped), `800m`,
`3b`, `7b` (Llama-shaped, transformers' LlamaConfig), `emb2g` (a 560 M-row embedding:
2.24 GB of weights and almost no compute — the cheap way past protobuf's 2 GiB), `unet` (diffusers' UNet2D, if
diffusers is installed).
`--path`: `emb2g` with a layer scaled past float16 (`emb2g_planted`) through bisect with a bundle, its repro.py,
keep-fp32, bisect --keep-fp32 SET, fix, fix --check, and the same model as the user's own ONNX file with external
data (`torch.onnx.export(external_data=True)`) through bisect --onnx: each step's exit code, wall and peak RSS.
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

LLAMA = {  # hidden, layers, heads, kv heads, intermediate, vocab: ~parameters
    "10m": (256, 4, 4, 4, 688, 8192),
    "130m": (768, 12, 12, 4, 2048, 32000),
    "135m8": (1024, 8, 16, 4, 2048, 32000),  # mid-sized and shallow: 136 M
    "135m30": (576, 30, 9, 3, 1536, 32000),  # deep and narrow, as SmolLM-135M is shaped (its embedding tied): 125 M
    "800m": (1536, 20, 16, 8, 5504, 32000),
    "3b": (2560, 32, 32, 8, 6912, 32000),
    "7b": (4096, 32, 32, 8, 14336, 32000),  # Mistral-shaped: 7.24 B
}

MODEL_FILE = '''
import torch

SIZE = {size!r}
LLAMA = {llama!r}


class _Logits(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, ids):
        return self.inner(input_ids=ids, use_cache=False).logits


class _Embedding(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(560_000, 1000)
        self.proj = torch.nn.Linear(1000, 64)
        self.head = torch.nn.Linear(64, 10)

    def forward(self, ids):
        return self.head(torch.relu(self.proj(self.emb(ids).mean(dim=1)) / 65536.0))


def build():
    torch.manual_seed(0)
    if SIZE.startswith("emb2g"):
        net = _Embedding().eval()
        if SIZE == "emb2g_planted":
            with torch.no_grad():
                net.proj.weight *= 1e6  # proj's output passes 65504: inf in float16
        return net, (torch.randint(0, 560_000, (2, 16)),)
    if SIZE == "unet":
        from diffusers import UNet2DModel

        net = UNet2DModel(sample_size=32, block_out_channels=(128, 256, 512, 512), layers_per_block=2).eval()

        class _Sample(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self, x, t):
                return self.net(x, t).sample

        return _Sample().eval(), (torch.randn(1, 3, 32, 32), torch.tensor([10]))
    from transformers import LlamaConfig, LlamaForCausalLM

    h, n, heads, kv, inter, vocab = LLAMA
    cfg = LlamaConfig(hidden_size=h, num_hidden_layers=n, num_attention_heads=heads, num_key_value_heads=kv,
                      intermediate_size=inter, vocab_size=vocab, max_position_embeddings=256,
                      attn_implementation="eager", tie_word_embeddings=SIZE == "135m30")
    return _Logits(LlamaForCausalLM(cfg).eval()).eval(), (torch.randint(0, vocab, (1, 32)),)
'''

FLOOR = '''
import importlib.util, json, os, sys, tempfile, time
import numpy as np
import torch
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("m", sys.argv[1]); mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
cuda = sys.argv[2] == "cuda"
net, example = mod.build()
if cuda:
    net = net.cuda(); example = tuple(x.cuda() for x in example)
with torch.no_grad():
    net(*example)
    if cuda:
        torch.cuda.synchronize()
net = net.cpu(); example = tuple(x.cpu() for x in example)
import onnxruntime as ort
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "model.onnx")
    torch.onnx.export(net, example, path, dynamo=True, external_data=True)
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
    sess = ort.InferenceSession(path, providers=providers)
    feed = {{i.name: x.numpy() for i, x in zip(sess.get_inputs(), example)}}
    sess.run(None, feed)
gpu = torch.cuda.max_memory_allocated() / 1e9 if cuda else None
print(json.dumps({{"wall": time.perf_counter() - t0, "gpu_gb": gpu,
                  "params": sum(p.numel() for p in net.parameters())}}))
'''


CPDEBUG = [sys.executable, "-m", "cp_debug.cli.main"]  # the console script, where the project is not installed
TIMEOUT = 3600.0


def child(cmd: list[str], env: dict, log: Path) -> tuple[float, float, int, str, float]:
    """(wall s, peak RSS GB from wait4, exit code, stdout, CPU s user+sys from wait4) of `cmd` as a child process;
    its stderr into `log`; killed past `TIMEOUT` seconds (exit -9). On a machine shared with other work the CPU
    seconds move less than the wall does."""
    import threading

    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, text=True)
        timer = threading.Timer(TIMEOUT, proc.kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
        wall = time.perf_counter() - t0
        out.seek(0)
        text = out.read()
    return wall, usage.ru_maxrss / 1e6, os.waitstatus_to_exitcode(status), text, usage.ru_utime + usage.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10m,130m,emb2g")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--out", default=None, help="folder for the models' files and JSON reports (a temp one if not)")
    ap.add_argument("--keep", action="store_true", help="keep the folder")
    ap.add_argument("--path", action="store_true", help="the user's whole path on the planted 2.2 GB model")
    ap.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds a child may run (then killed)")
    ap.add_argument("--step", default="both", choices=("both", "floor", "bisect"),
                    help="run one child of the pair (the floor's figures kept in --out for the bisect's row)")
    args = ap.parse_args()
    globals()["TIMEOUT"] = args.timeout
    root = Path(args.out or tempfile.mkdtemp(prefix="cpdebug_size_"))
    root.mkdir(parents=True, exist_ok=True)
    if args.path:
        return run_path(root)
    pair = "torch-cuda,ort-cuda-fp16" if args.device == "cuda" else "torch,ort-cpu-fp16"
    card = _card() if args.device == "cuda" else os.uname().machine
    print(f"device {args.device} ({card}), pair {pair}, {os.cpu_count()} cores")
    print(f"{'size':>6} {'params':>8} {'floor s':>8} {'bisect s':>9} {'ratio':>6} {'floor GB':>9} {'bisect GB':>10} "
          f"{'RSS ratio':>9} {'floor GPU GB':>12} exit outcome  (CPU s user+sys: floor, bisect, ratio; load)")
    for size in args.sizes.split(","):
        model = root / f"model_{size}.py"
        model.write_text(MODEL_FILE.format(size=size, llama=LLAMA.get(size)))
        env = {**os.environ, "CPDEBUG_CACHE_DIR": str(root / f"cache_{size}")}
        shutil.rmtree(env["CPDEBUG_CACHE_DIR"], ignore_errors=True)
        kept = root / f"floor_{size}.json"
        if args.step != "bisect":
            floor_script = root / "floor.py"
            floor_script.write_text(FLOOR.format())
            fw, frss, fcode, fout, fcpu = child([sys.executable, str(floor_script), str(model), args.device], env,
                                                root / f"floor_{size}.log")
            floor = json.loads(fout.strip().splitlines()[-1]) if fcode == 0 else {}
            kept.write_text(json.dumps({**floor, "child_wall": fw, "rss": frss, "exit": fcode, "cpu": fcpu}))
            print(f"  floor: exit {fcode}, {fw:.1f} s, {frss:.2f} GB, {fcpu:.1f} CPU s, load "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
            if args.step == "floor":
                continue
        else:
            floor = json.loads(kept.read_text()) if kept.is_file() else {}
            fw, frss = floor.get("child_wall", float("nan")), floor.get("rss", float("nan"))
            fcpu = floor.get("cpu", float("nan"))
        report = root / f"bisect_{size}.json"
        bw, brss, bcode, _, bcpu = child([*CPDEBUG, "bisect", "--torch", f"{model}:build", "-b", pair, "--json",
                                    str(report), "-q"], env, root / f"bisect_{size}.log")
        outcome = json.loads(report.read_text()).get("outcome") if report.is_file() else None
        gpu = floor.get("gpu_gb")
        gpu_text = "-" if gpu is None else f"{gpu:.2f}"
        print(f"{size:>6} {floor.get('params', 0) / 1e6:>7.0f}M {fw:>8.1f} {bw:>9.1f} {bw / fw:>5.2f}x {frss:>9.2f} "
              f"{brss:>10.2f} {brss / frss:>8.2f}x {gpu_text:>12} {bcode:>4} {outcome}  ({fcpu:.1f}, {bcpu:.1f}, "
              f"{bcpu / fcpu:.2f}x; load {os.getloadavg()[0]:.1f})", flush=True)
    if not args.keep and not args.out:
        shutil.rmtree(root, ignore_errors=True)
    return 0


PATH_STEPS = [  # (name, argv after the model options or a whole argv, expected exit codes)
    ("bisect --bundle", ["bisect", "{model}", "-b", "torch,ort-cpu-fp16", "--json", "{out}/run.json",
                         "--bundle", "{out}/bug", "-q"], (1,)),
    ("repro.py", ["{python}", "{out}/bug/repro.py", "--dir", "{out}/bug"], (1,)),
    ("keep-fp32", ["keep-fp32", "{model}", "--backends", "ort-cpu-fp16", "--json", "{out}/keep.json"], (0,)),
    ("bisect --keep-fp32", ["bisect", "{model}", "-b", "torch,ort-cpu-fp16", "--keep-fp32", "{keep}", "-q"], (0,)),
    ("fix", ["fix", "{model}", "--out", "{out}/fix", "-q"], (0,)),
    ("fix --check", ["fix", "--check", "{out}/fix", "-q"], (0,)),
    ("bisect --onnx (external data)", ["bisect", "--onnx", "{out}/user/model.onnx", "--inputs", "{out}/x.npz",
                                       "-b", "ort,ort-cpu-fp16", "-q"], (1,)),
]

EXPORT_USER_FILE = """
import importlib.util, sys, numpy as np, torch
spec = importlib.util.spec_from_file_location("m", sys.argv[1]); mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
net, (ids,) = mod.build()
torch.onnx.export(net, (ids,), sys.argv[2] + "/model.onnx", dynamo=True, external_data=True, input_names=["ids"])
np.savez(sys.argv[3], ids=ids.numpy())
"""


def run_path(root: Path) -> int:
    """The user's whole path on the planted 2.2 GB model, one step after the other (each its own process)."""
    model = root / "model_emb2g_planted.py"
    model.write_text(MODEL_FILE.format(size="emb2g_planted", llama=None))
    env = {**os.environ, "CPDEBUG_CACHE_DIR": str(root / "cache_path")}
    (root / "user").mkdir(exist_ok=True)
    (root / "export_user.py").write_text(EXPORT_USER_FILE)
    wall, rss, code, _, _ = child([sys.executable, str(root / "export_user.py"), str(model), str(root / "user"),
                                str(root / "x.npz")], env, root / "export_user.log")
    print(f"{'the user file: torch.onnx.export(external_data=True)':<44} exit {code}  {wall:7.1f} s  {rss:6.2f} GB")
    failed = 0
    for name, argv, expected in PATH_STEPS:
        keep = ""
        if (root / "keep.json").is_file():
            keep = ",".join(json.loads((root / "keep.json").read_text()).get("keep") or [])
        args = [a.format(model="\0", out=root, python=sys.executable, keep=keep) for a in argv]
        cmd = args if name == "repro.py" else [*CPDEBUG, *args]
        cmd = [x for a in cmd for x in (["--torch", f"{model}:build"] if a == "\0" else [a])]
        wall, rss, code, _, _ = child(cmd, env, root / f"{name.split()[0].replace('.', '_')}.log")
        ok = code in expected
        failed += not ok
        print(f"{name:<44} exit {code}{'' if ok else ' (expected ' + str(expected) + ')'}  {wall:7.1f} s  "
              f"{rss:6.2f} GB", flush=True)
    return 1 if failed else 0


def _card() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, check=True).stdout.strip().splitlines()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown GPU"


if __name__ == "__main__":
    raise SystemExit(main())
