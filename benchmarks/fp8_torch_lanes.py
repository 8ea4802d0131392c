"""Issue 86's torch FP8 lanes beside ONNX Runtime's: `torch-*-fp8` (E4M3 fake quantization of every Linear / Conv,
emulated; on CUDA 8.9+ nn.Linear as FP8 GEMMs through torch._scaled_mm) against `ort-*-fp8` (ModelOpt-style Q/DQ),
on tests/backends/fp8_models.py's nets: the small CNN (healthy, and with its planted weight outlier), a transformer
block, and two wide MLPs (1024 → 4096 → 1024 over 512 tokens: GEMMs where FP8's tensor cores show).

    PYTHONPATH=. python benchmarks/fp8_torch_lanes.py [--repeat 20] [--no-bisect]

Per device (the CPU; CUDA where torch sees a GPU) and net, one table row per lane: the output's relative RMS error
against FP32 torch on that device, the torch lane's distance from the ORT lane (relative RMS: summation order where
both emulate, accumulation order where torch ran FP8 GEMMs), the median time of one inference after a warm-up (FP32
torch's on the row above each net's lanes), how torch's layers ran (FP8 GEMMs / emulated), and
`cpdebug bisect --torch NET -b REF,torch-*-fp8,ort-*-fp8`'s verdict and root cause for each lane (the lanes that run
here: without onnxruntime-gpu, ort-cuda-fp8's row says so).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.backends import fp8_models  # noqa: E402 - the tests' own nets, one home

NETS = ("cnn", "cnn_fault", "block", "wide")


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - b) ** 2)) / max(np.sqrt(np.mean(np.square(b))), 1e-30))


def _export(module, x, path: Path) -> Path:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False,
                          opset_version=17)
    return path


def _lane(spec: str, module, onnx: Path, feed: dict, repeat: int):
    """(output, median seconds, how torch's layers ran or the ORT lane's first note), or the reason it cannot run."""
    from cp_debug.backends.factory import check_available, make_runner
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.errors import CpDebugError

    bspec = BackendSpec.parse(spec)
    try:
        check_available(bspec)
        with make_runner(bspec, torch_module=module, onnx_model=onnx, input_names=["x"], output_names=["y"],
                         calib_feeds=[feed]) as runner:
            y = runner.infer(feed)["y"]
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                runner.infer(feed)
                times.append(time.perf_counter() - t0)
            fp8 = runner.settings().get("fp8")
            how = (f"{len(fp8['fp8_gemm_layers'])} FP8 GEMM / {len(fp8['emulated_layers'])} emulated" if fp8
                   else "Q/DQ, float32 arithmetic" if bspec.precision == "fp8" else "")
            return y, statistics.median(times) if times else None, how
    except CpDebugError as err:
        return None, None, str(err).splitlines()[0][:90]


def _bisect(net: str, ref: str, lanes: list[str], out: Path) -> dict:
    """{lane: "verdict, root cause"} of one `cpdebug bisect --torch` over `lanes`."""
    import subprocess

    report = out / f"{net}_{ref}.json"
    subprocess.run([sys.executable, "-m", "cp_debug.cli.main", "bisect", "--torch",
                    f"{fp8_models.__file__}:{net}", "-b", ",".join([ref, *lanes]), "--json", str(report), "-q"],
                   capture_output=True, text=True)
    if not report.is_file():
        return {lane: "no report" for lane in lanes}
    r = json.loads(report.read_text())
    said = {}
    for lane in lanes:
        root = (r.get("root_cause") or {}).get(lane) or {}
        verdict = (r.get("outcomes") or {}).get(lane) or r.get("outcome", "?")
        said[lane] = f"{verdict}{', root ' + root['probe'] if root.get('probe') else ''}"
    return said


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--no-bisect", action="store_true")
    ap.add_argument("--nets", default=",".join(NETS))
    args = ap.parse_args()
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    out = Path(tempfile.mkdtemp(prefix="cpdebug_fp8_torch_"))
    print(f"torch {torch.__version__}" + (f", {torch.cuda.get_device_name()} (sm_"
                                          f"{''.join(map(str, torch.cuda.get_device_capability()))})"
                                          if "cuda" in devices else ", no GPU"))
    print("| device | net | lane | rel. RMSE vs FP32 | torch vs ORT lane | ms / inference | layers | bisect |")
    print("|---|---|---|---|---|---|---|---|")
    for device in devices:
        for net in args.nets.split(","):
            module, (x,) = getattr(fp8_models, net)()
            feed = {"x": x.numpy()}
            onnx = _export(module, x, out / f"{net}.onnx")
            lanes = [f"torch-{device}-fp8", f"ort-{device}-fp8"]
            reference = "torch" if device == "cpu" else "torch-cuda"
            ref, ref_secs, _ = _lane(reference, module, onnx, feed, args.repeat)
            print(f"| {device} | {net} | {reference} (FP32, the reference) | — | | {1e3 * ref_secs:.2f} | | |")
            ran = {lane: _lane(lane, module, onnx, feed, args.repeat) for lane in lanes}
            runs = [lane for lane in lanes if ran[lane][0] is not None]  # a lane missing here is said, not bisected
            said = {} if args.no_bisect or not runs else _bisect(net, reference, runs, out)
            t_y, o_y = ran[lanes[0]][0], ran[lanes[1]][0]
            apart = f"{_rel(t_y, o_y):.3g}" if t_y is not None and o_y is not None else "—"
            for lane in lanes:
                y, secs, how = ran[lane]
                err = f"{_rel(y, ref):.3g}" if y is not None else "—"
                ms = f"{1e3 * secs:.2f}" if secs is not None else "—"
                print(f"| {device} | {net} | {lane} | {err} | {apart if lane == lanes[0] else ''} | {ms} | {how} | "
                      f"{said.get(lane, '')} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
