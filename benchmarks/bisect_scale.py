"""cpdebug bisect --level all against polygraphy on the same CenterPoint backbone/neck/head ONNX.

Prints wall time and peak memory (max RSS of the process) of, in one run:
  1. polygraphy run --onnxrt --onnxrt --onnx-outputs mark all   (every tensor of both runs at once)
  2. polygraphy run --onnxrt --onnxrt                             (the two plain inferences)
  3. cpdebug bisect --onnx … --backends ort,ort --level all
Target (issue 3): 3 within 3x the time and 1.5x the memory of 2.
polygraphy reads the inputs through a data-loader script over the same .npz cpdebug reads (its JSON input
format costs it several seconds more on awml-base's 133 MB feed; `--json-inputs` measures that way instead).
`--fp16` adds `cpdebug bisect --backends ort,ort-cpu-fp16 --level all`: a candidate that really differs, so
every segment also runs on the reference's boundary (local error) and the noise floor is measured where it
diverges — the ort,ort run shares bit-identical arrays and skips both.

`--only-fp16` measures just that (issue 12): the floor — one plain ORT session + inference of the FP32 model,
then of the FP16 model (`convert_to_fp16`), outputs only — against `ort,ort-cpu-fp16`, and prints the table. A
second floor runs the FP16 model as the bisect's lane computes it (`emulate_half_storage`: float16 storage after
every node; the plain FP16 model keeps float32 activations on ORT's CPU provider): the table gives both ratios.
`--repeat N` measures the floor and that bisect N times, one after the other in turn, and tables the medians: on a
machine shared with other work one pair moves by ±10%. Each line gives the load average when it ended.

    python benchmarks/bisect_scale.py --preset demo [--preset awml-base] [--fp16 | --only-fp16] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def measure(cmd: list[str]) -> tuple[float, float, int, float]:
    """(wall seconds, peak RSS GiB, exit code, CPU seconds user+sys) of one child process. On a machine shared
    with other work, CPU seconds move less than wall time does."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        print(f"  ! {' '.join(cmd[:4])}… exited {code}: {err.strip().splitlines()[-1] if err.strip() else ''}")
    return wall, usage.ru_maxrss / (1 << 20), code, usage.ru_utime + usage.ru_stime


def prepare(preset: str, out: str) -> tuple[str, str, str]:
    import numpy as np
    from polygraphy.json import save_json

    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    subject = centerpoint_subject(preset=preset)
    enc, bb = subject.stages
    onnx_path = os.path.join(out, "pts_backbone_neck_head.onnx")
    import onnx

    onnx.save(bb.onnx(), onnx_path)
    from cp_debug.backends.factory import make_runner
    from cp_debug.backends.spec import BackendSpec

    with make_runner(BackendSpec.parse("ort"), onnx_model=enc.onnx()) as r:
        pillars = r.infer(subject.inputs)
    feed = subject.feed(1, pillars)
    npz = os.path.join(out, "inputs.npz")
    np.savez(npz, **feed)
    js = os.path.join(out, "inputs.json")
    save_json([feed], js)
    loader = os.path.join(out, "load_inputs.py")
    with open(loader, "w") as f:
        f.write(f"import numpy as np\n\n\ndef load_data():\n    with np.load({npz!r}) as z:\n"
                "        yield {k: z[k] for k in z.files}\n")
    return onnx_path, npz, js, loader


PLAIN, EMULATED = "plain ORT FP32 + FP16", "FP32 + emulated FP16"  # the two floors (`floor`), as the table names them


def floor(onnx_path: str, npz: str, emulated: bool = False) -> None:
    """The issue's floor: one plain ORT session + inference of the FP32 model, then of the FP16 model
    (`convert_to_fp16`), graph outputs only. Run as a child so its peak RSS is its own.

    `emulated`: the FP16 model rewritten by `emulate_half_storage` (every float16 tensor rounded after its node, as a
    GPU stores it): the plain *emulated* FP16 pipeline, whose values the bisect's CPU FP16 lane computes bit for bit.
    The plain FP16 model is not that pipeline: ONNX Runtime's CPU provider drops the Cast pairs it inserts, so its
    activations stay float32 (precision/half_storage.py)."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from cp_debug.precision.fp16 import convert_to_fp16
    from cp_debug.precision.half_storage import emulate_half_storage

    with np.load(npz) as z:
        feed = {k: z[k] for k in z.files}
    model = onnx.load(onnx_path)
    half = convert_to_fp16(model)
    for m in (model, emulate_half_storage(half).model if emulated else half):
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        sess.run(None, feed)
        del sess


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", action="append", default=None)
    ap.add_argument("--fp16", action="store_true", help="also bisect ort,ort-cpu-fp16")
    ap.add_argument("--json-inputs", action="store_true", help="polygraphy loads the inputs from JSON")
    ap.add_argument("--prepare-into", help=argparse.SUPPRESS)  # internal: run prepare() in a child process
    # internal: a floor's FP32 + FP16 runs, KIND "plain" or "emulated"
    ap.add_argument("--floor", nargs=3, metavar=("KIND", "ONNX", "NPZ"), help=argparse.SUPPRESS)
    ap.add_argument("--only-fp16", action="store_true",
                    help="measure only the issue-12 table: both FP32+FP16 floors against ort,ort-cpu-fp16")
    ap.add_argument("--repeat", type=int, default=1,
                    help="measure the FP16 floor and bisect this many times, in turn; the table holds the medians")
    args = ap.parse_args()
    if args.floor:
        kind, onnx_path, npz = args.floor
        if kind not in ("plain", "emulated"):
            ap.error(f"--floor KIND is plain or emulated, not {kind!r}")
        floor(onnx_path, npz, emulated=kind == "emulated")
        return
    if args.prepare_into:
        print("\n".join(prepare(args.preset[0], args.prepare_into)))
        return
    presets = args.preset or ["demo"]
    polygraphy = shutil.which("polygraphy") or "polygraphy"
    # this checkout's cp_debug (PYTHONPATH is inherited), not whatever `cpdebug` is on PATH
    cpdebug = [sys.executable, "-m", "cp_debug.cli.main"]
    for preset in presets:
        tmp = tempfile.mkdtemp(prefix=f"cpdebug-scale-{preset}-")
        try:
            # In a child: a process's peak RSS survives fork+exec, so this one must stay small (no torch, no model)
            # or every measured child would report at least its size.
            made = subprocess.run([sys.executable, __file__, "--preset", preset, "--prepare-into", tmp],
                                  check=True, capture_output=True, text=True)
            onnx_path, npz, js, loader = made.stdout.strip().splitlines()[-4:]
            feed = ["--load-inputs", js] if args.json_inputs else ["--data-loader-script", f"{loader}:load_data"]
            runs = {} if args.only_fp16 else {
                "polygraphy mark all": [polygraphy, "run", onnx_path, "--onnxrt", "--onnxrt", *feed,
                                        "--onnx-outputs", "mark", "all"],
                "polygraphy outputs only": [polygraphy, "run", onnx_path, "--onnxrt", "--onnxrt", *feed],
                "cpdebug bisect --level all": [*cpdebug, "bisect", "--onnx", onnx_path, "--inputs", npz,
                                               "--backends", "ort,ort", "--level", "all", "--quiet",
                                               "--json", os.path.join(tmp, "run.json")],
            }
            pair = {}
            if args.fp16 or args.only_fp16:
                for kind, which in (("plain", PLAIN), ("emulated", EMULATED)):
                    pair[f"floor: {which}"] = [sys.executable, __file__, "--floor", kind, onnx_path, npz]
                pair["cpdebug … ort,ort-cpu-fp16"] = [*cpdebug, "bisect", "--onnx", onnx_path, "--inputs", npz,
                                                     "--backends", "ort,ort-cpu-fp16", "--level", "all",
                                                     "--quiet", "--json", os.path.join(tmp, "run16.json")]
            print(f"\n{preset}: {onnx_path}  (floor and cpdebug measured in this one run, one after the other)")
            res, seen = {}, {}
            for name, cmd in [*runs.items(), *[kv for _ in range(max(1, args.repeat)) for kv in pair.items()]]:
                seen.setdefault(name, []).append(measure(cmd))
                wall, rss, code, cpu = seen[name][-1]
                print(f"  {name:28s} {wall:8.1f} s {rss:7.2f} GiB peak RSS {cpu:8.1f} s CPU   exit {code}   "
                      f"load {os.getloadavg()[0]:.1f}")
                if name == "cpdebug … ort,ort-cpu-fp16" and args.repeat > 1:
                    for which in (PLAIN, EMULATED):
                        fl = seen[f"floor: {which}"][-1]
                        print(f"  {'':28s} against {which}: {wall / fl[0]:.2f}x wall, "
                              f"{rss / fl[1]:.2f}x memory, {cpu / fl[3]:.2f}x CPU")
            for name, got in seen.items():  # the median of each column over the repetitions (the run itself: N=1)
                res[name] = tuple(statistics.median(m[i] for m in got) for i in range(4))
            if not args.only_fp16:
                base = res["polygraphy outputs only"]
                mine = res["cpdebug bisect --level all"]
                print(f"  cpdebug / plain inferences: {mine[0] / base[0]:.2f}x time (target 3x), "
                      f"{mine[1] / base[1]:.2f}x memory (target 1.5x)")
            if f"floor: {PLAIN}" in res:
                fl, em = res[f"floor: {PLAIN}"], res[f"floor: {EMULATED}"]
                f16 = res["cpdebug … ort,ort-cpu-fp16"]
                if args.repeat > 1:
                    print(f"\n  medians of {args.repeat} runs each:")
                print("\n  | run | wall | peak RSS | CPU (user+sys) |\n  |---|---|---|---|")
                print(f"  | floor: one plain ORT session + inference, FP32 then FP16 | {fl[0]:.1f} s | {fl[1]:.2f} GiB "
                      f"| {fl[3]:.1f} s |")
                print(f"  | floor: the same, FP32 then emulated FP16 (float16 storage, as the lane computes) "
                      f"| {em[0]:.1f} s | {em[1]:.2f} GiB | {em[3]:.1f} s |")
                print(f"  | `cpdebug bisect … --backends ort,ort-cpu-fp16 --level all` | {f16[0]:.1f} s "
                      f"| {f16[1]:.2f} GiB "
                      f"| {f16[3]:.1f} s |")
                for what, base in (("plain FP16", fl), ("emulated FP16", em)):
                    print(f"  | ratio to the {what} floor (target 2x time (issue 46), 1.5x memory) "
                          f"| **{f16[0] / base[0]:.2f}x** | **{f16[1] / base[1]:.2f}x** | {f16[3] / base[3]:.2f}x |")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
