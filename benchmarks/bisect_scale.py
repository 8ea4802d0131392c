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

    python benchmarks/bisect_scale.py --preset demo [--preset awml-base] [--fp16]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time


def measure(cmd: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS GiB, exit code) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        print(f"  ! {' '.join(cmd[:4])}… exited {code}: {err.strip().splitlines()[-1] if err.strip() else ''}")
    return wall, usage.ru_maxrss / (1 << 20), code


def prepare(preset: str, out: str) -> tuple[str, str, str]:
    import numpy as np
    from polygraphy.json import save_json

    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    subject = centerpoint_subject(preset=preset)
    enc, bb = subject.stages
    onnx_path = os.path.join(out, "pts_backbone_neck_head.onnx")
    import onnx

    onnx.save(bb.onnx(), onnx_path)
    from cp_debug.backends import make_runner
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", action="append", default=None)
    ap.add_argument("--fp16", action="store_true", help="also bisect ort,ort-cpu-fp16")
    ap.add_argument("--json-inputs", action="store_true", help="polygraphy loads the inputs from JSON")
    ap.add_argument("--prepare-into", help=argparse.SUPPRESS)  # internal: run prepare() in a child process
    args = ap.parse_args()
    if args.prepare_into:
        print("\n".join(prepare(args.preset[0], args.prepare_into)))
        return
    presets = args.preset or ["demo"]
    polygraphy = shutil.which("polygraphy") or "polygraphy"
    cpdebug = shutil.which("cpdebug") or "cpdebug"
    for preset in presets:
        tmp = tempfile.mkdtemp(prefix=f"cpdebug-scale-{preset}-")
        try:
            # In a child: a process's peak RSS survives fork+exec, so this one must stay small (no torch, no model)
            # or every measured child would report at least its size.
            made = subprocess.run([sys.executable, __file__, "--preset", preset, "--prepare-into", tmp],
                                  check=True, capture_output=True, text=True)
            onnx_path, npz, js, loader = made.stdout.strip().splitlines()[-4:]
            feed = ["--load-inputs", js] if args.json_inputs else ["--data-loader-script", f"{loader}:load_data"]
            runs = {
                "polygraphy mark all": [polygraphy, "run", onnx_path, "--onnxrt", "--onnxrt", *feed,
                                        "--onnx-outputs", "mark", "all"],
                "polygraphy outputs only": [polygraphy, "run", onnx_path, "--onnxrt", "--onnxrt", *feed],
                "cpdebug bisect --level all": [cpdebug, "bisect", "--onnx", onnx_path, "--inputs", npz,
                                               "--backends", "ort,ort", "--level", "all", "--quiet",
                                               "--json", os.path.join(tmp, "run.json")],
            }
            if args.fp16:
                runs["cpdebug … ort,ort-cpu-fp16"] = [cpdebug, "bisect", "--onnx", onnx_path, "--inputs", npz,
                                                     "--backends", "ort,ort-cpu-fp16", "--level", "all",
                                                     "--quiet", "--json", os.path.join(tmp, "run16.json")]
            print(f"\n{preset}: {onnx_path}")
            res = {}
            for name, cmd in runs.items():
                res[name] = measure(cmd)
                wall, rss, code = res[name]
                print(f"  {name:28s} {wall:8.1f} s {rss:7.2f} GiB peak RSS   exit {code}")
            base = res["polygraphy outputs only"]
            mine = res["cpdebug bisect --level all"]
            print(f"  cpdebug / plain inferences: {mine[0] / base[0]:.2f}x time (target 3x), "
                  f"{mine[1] / base[1]:.2f}x memory (target 1.5x)")
            if args.fp16:
                f16 = res["cpdebug … ort,ort-cpu-fp16"]
                print(f"  ort,ort-cpu-fp16 / plain inferences: {f16[0] / base[0]:.2f}x time, "
                      f"{f16[1] / base[1]:.2f}x memory")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
