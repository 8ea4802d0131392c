"""The cases of issues 84 and 86, each bisected on the CPU and on CUDA in one run, side by side.

Issue 84 (faults the network hides, the user's own files): the guarded BERT at the default level and `--level all`,
a TopK near tie, a Cast that truncates a rounded value, the user's onnxconverter-common FP16 file, an INT8 Q/DQ file
of ONNX Runtime's quantize_static with a stale weight scale, MobileNetV2's depthwise plant in INT8 at two levels.
Issue 86 (FP8 and NVFP4): a CNN and a transformer block of our own, healthy and planted, on the FP8 lanes; an input
beyond the calibrated range; a file in ModelOpt's FP8 layout (healthy: the runtime fault at ONNX Runtime's default
level; a stale scale); the NVFP4 / MXFP8 emulated lanes. Every case runs `cpdebug bisect` through the CLI in its own
process with `ort-cpu-*` and `ort-cuda-*` (the reference the same), and prints one row per run: exit code, outcome,
root cause, the hint's first words and the wall time; `--json FILE` keeps every row.

Usage (repo root; on the GPU host after `source benchmarks/gpu_setup.sh`):
    python benchmarks/gpu_issues_84_86.py [--only NAME,NAME] [--devices cpu,cuda] [--json rows.json]
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
sys.path.insert(0, str(ROOT))


def _files(work: Path) -> dict[str, Path]:
    """The ONNX files and folders the cases read, written once."""
    import numpy as np
    import onnx

    from tests.backends.test_ort_fp8 import _feed
    from tests.bisect import fp8_models as fm
    from tests.bisect import test_deployed_user_files as uf
    from tests.bisect.modelopt_files import modelopt_fp8

    out: dict[str, Path] = {}
    for name, fault in (("cnn_healthy", None), ("cnn_activation", "activation"), ("cnn_weight", "weight")):
        out[name] = fm.export(fm.cnn(fault), fm.cnn_example(), work / f"{name}.onnx")
    for name, fault in (("block", True), ("block_healthy", False)):
        out[name] = fm.export(fm.block(fault), fm.block_input(), work / f"{name}.onnx")
    from tests.precision import test_nvfp4 as t4

    out["nvfp4_cnn_fault"] = t4._export(t4._cnn(True), fm.cnn_example(), work / "nvfp4_cnn_fault.onnx")
    out["nvfp4_block_fault"] = t4._export(t4._block("weight"), fm.torch.zeros(1, 12, 32), work / "nvfp4_block.onnx")
    np.savez(work / "calib_small.npz", x=fm.cnn_input(0.05, n=4, seed=3))
    np.savez(work / "big.npz", x=fm.cnn_input(3.0, seed=4))
    out["calib_small"], out["big"] = work / "calib_small.npz", work / "big.npz"
    rng = np.random.default_rng(0)  # tokens with one feature 40 higher than the calibration's
    np.savez(work / "tok_calib.npz", x=rng.standard_normal((4, 1, 8, 32)).astype(np.float32))
    tokens = rng.standard_normal((1, 8, 32)).astype(np.float32)
    tokens[..., 5] += 40.0
    np.savez(work / "tok_big.npz", x=tokens)
    out["tok_calib"], out["tok_big"] = work / "tok_calib.npz", work / "tok_big.npz"
    # a ModelOpt-layout FP8 file of the healthy CNN, and one with a stale activation scale
    for name, stale in (("modelopt", False), ("modelopt_stale", True)):
        folder = work / name
        folder.mkdir()
        path = modelopt_fp8(out["cnn_healthy"], folder / "cnn_healthy.onnx", ["/body/body.4/Conv"], _feed())
        if stale:
            model = onnx.load(path)
            for init in model.graph.initializer:
                if init.name == "/body/body.3/Relu_output_0_scale":
                    value = onnx.numpy_helper.to_array(init) / 64
                    init.CopyFrom(onnx.numpy_helper.from_array(value.astype("float32"), init.name))
            onnx.save(model, path)
        out[name] = folder
    # the user's onnxconverter-common FP16 file; ORT quantize_static INT8 (a stale weight scale) and FP8 files
    from onnxconverter_common import float16

    (work / "fp16").mkdir()
    fp32 = onnx.load(uf._export("fp16_overflow", work / "uf_model.onnx"))
    onnx.save(float16.convert_float_to_float16(fp32, keep_io_types=True), work / "fp16" / "model.onnx")
    out["fp16_file"] = work / "fp16"
    for fp8 in (False, True):
        sub = work / ("q_fp8" if fp8 else "q_int8")
        sub.mkdir()
        src, folder = uf._quantized(sub, fp8=fp8)
        if not fp8:
            q = onnx.load(folder / "model.onnx")
            scale = next(i for i in q.graph.initializer if i.name == "body.4.weight_scale")
            scale.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(scale) * np.float32(1.5),
                                                        scale.name))
            onnx.save(q, folder / "model.onnx")
        out["q_fp8_src" if fp8 else "q_int8_src"], out["q_fp8" if fp8 else "q_int8"] = src, folder
    out["vae_fp16"] = _vae_file(work)
    return out


def _vae_file(work: Path) -> Path | None:
    """The diffusers VAE decoder's FP16 file as diffusers' and Olive's ONNX pipelines make it, its planted conv
    overflowing (`tests/zoo/diffusers_models.overflow_fp16_file`); None where diffusers is not installed."""
    try:
        from tests.zoo import diffusers_models

        return diffusers_models.overflow_fp16_file(work / "vae_fp16")
    except ImportError:
        return None


def _cases(f: dict[str, Path]) -> list[tuple[str, list[str], str]]:
    """(name, bisect arguments with {dev} for cpu / cuda, what the issue expects)."""
    tests = ROOT / "tests"
    hf, dec, idx = tests / "zoo" / "hf_models.py", tests / "bisect" / "decision_models.py", \
        tests / "bisect" / "index_models.py"
    mb, uf = tests / "bisect" / "int8_mobilenet.py", tests / "bisect" / "user_files_models.py"
    return [
        ("bert_guarded", ["--torch", f"{hf}:build_bert_guarded", "-b", "torch,ort-{dev}-fp16"],
         "exit 1, encoder.layer.1.attention.self[0], FP16 overflow QK^T"),
        ("bert_guarded_all", ["--torch", f"{hf}:build_bert_guarded", "-b", "torch,ort-{dev}-fp16", "--level", "all"],
         "the same as the default level"),
        ("topk_tie", ["--torch", f"{dec}:build", "-b", "torch,ort-{dev}-fp16"], "decision flip at TopK"),
        ("rtdetr_topk", ["--torch", f"{hf}:build_rtdetr", "-b", "torch,ort-{dev}-fp16"],
         "exit 0, decision flip at model: TopK, the outputs compared as sets (issue 84's RT-DETR)"),
        ("nms_flip", ["--torch", f"{dec}:build_nms", "-b", "torch,ort-{dev}-fp16"],
         "exit 0, non-max suppression flip, its IoU against 0.5"),
        ("cast_flip", ["--torch", f"{idx}:build_cast", "-b", "torch,ort-{dev}-fp16"], "index flip at Cast"),
        ("fp16_file", ["--torch", f"{uf}:fp16_overflow", "-b", f"torch,ort-{{dev}}@{f['fp16_file']}"],
         "exit 1, body.4, FP16 overflow > 65504"),
        ("diffusers_vae_file", ["--torch", f"{tests / 'zoo' / 'diffusers_models.py'}:overflow", "-b",
                                f"torch,ort-{{dev}}@{f['vae_fp16']}"],
         "exit 1, vae.decoder.up_blocks.1.resnets.0.conv1, FP16 overflow ~1.7e5, verified"),
        ("int8_file", ["--onnx", str(f["q_int8_src"]), "-b", f"ort,ort-{{dev}}@{f['q_int8']}"],
         "exit 1, body.4/Conv, judged at int8"),
        ("fp8_file_ort", ["--onnx", str(f["q_fp8_src"]), "-b", f"ort,ort-{{dev}}@{f['q_fp8']}"],
         "exit 0, judged at fp8"),
        ("mobilenet_dw_block", ["--torch", f"{mb}:depthwise", "-b", "torch,ort-{dev}-int8", "--level", "block"],
         "features.5, INT8 resolution lost after features.5.conv.1.1"),
        ("mobilenet_dw_all", ["--torch", f"{mb}:depthwise", "-b", "torch,ort-{dev}-int8", "--level", "all"],
         "features.5.conv.1.1, INT8 resolution lost"),
        ("sketch_cancelled", ["--torch", f"{tests / 'bisect' / 'collapse_models.py'}:cancelled", "-b",
                              "torch,ort-{dev}-fp16"], "exit 1, 1.inner.shifted.1 (a large error behind a residual)"),
        ("clip_fusion", ["--torch", f"{tests / 'bisect' / 'clip_models.py'}:tiny", "-b", "torch,ort-{dev}-int8",
                         "--level", "block"], "features.1, ONNX Runtime's ClipQuantFusion, verified (CPU)"),
        ("mobilenet_issue84", ["--torch", f"{mb}:issue_84", "-b", "torch,ort-{dev}-int8", "--level", "block"],
         "features.17.conv: ClipQuantFusion (CPU)"),
        ("fp8_cnn_healthy", ["--onnx", str(f["cnn_healthy"]), "-b", "ort,ort-{dev}-fp8"], "exit 0"),
        ("fp8_cnn_activation", ["--onnx", str(f["cnn_activation"]), "-b", "ort,ort-{dev}-fp8"],
         "exit 1, /body/body.2/Conv_output_0, FP8 flush, verified left out"),
        ("fp8_cnn_weight", ["--onnx", str(f["cnn_weight"]), "-b", "ort,ort-{dev}-fp8"],
         "exit 1, /body/body.2/Conv_output_0, verified per-channel"),
        ("fp8_beyond_calib", ["--onnx", str(f["cnn_healthy"]), "-b", "ort,ort-{dev}-fp8", "--calib",
                              str(f["calib_small"]), "--inputs", str(f["big"])],
         "/body/body.0/Conv_output_0, the calibration set does not cover this input"),
        ("fp8_block_healthy", ["--onnx", str(f["block_healthy"]), "-b", "ort,ort-{dev}-fp8"], "exit 0"),
        ("fp8_block", ["--onnx", str(f["block"]), "-b", "ort,ort-{dev}-fp8"], "exit 1, /fc1/MatMul_output_0"),
        ("fp8_block_beyond_calib", ["--onnx", str(f["block_healthy"]), "-b", "ort,ort-{dev}-fp8", "--calib",
                                    str(f["tok_calib"]), "--inputs", str(f["tok_big"])],
         "/attn/…, the calibration set does not cover this input"),
        ("modelopt_file", ["--onnx", str(f["cnn_healthy"]), "-b", f"ort,ort-{{dev}}@{f['modelopt']}"],
         "exit 0, fp8; the default level named where it computes wrong"),
        ("modelopt_stale", ["--onnx", str(f["cnn_healthy"]), "-b", f"ort,ort-{{dev}}@{f['modelopt_stale']}"],
         "exit 1, /body/body.3/Relu_output_0, the file's FP8 Q/DQ clips"),
        ("nvfp4_cnn_healthy", ["--onnx", str(f["cnn_healthy"]), "-b", "ort,ort-{dev}-nvfp4"], "exit 0, emulated"),
        ("nvfp4_block_healthy", ["--onnx", str(f["block_healthy"]), "-b", "ort,ort-{dev}-nvfp4"],
         "exit 0, emulated"),
        ("mxfp8_cnn_healthy", ["--onnx", str(f["cnn_healthy"]), "-b", "ort,ort-{dev}-mxfp8"], "exit 0, emulated"),
        ("nvfp4_cnn_fault", ["--onnx", str(f["nvfp4_cnn_fault"]), "-b", "ort,ort-{dev}-nvfp4"],
         "exit 1, /body/body.4/Conv_output_0, NVFP4 block-scale underflow, verified left out"),
        ("nvfp4_block_fault", ["--onnx", str(f["nvfp4_block_fault"]), "-b", "ort,ort-{dev}-nvfp4"],
         "exit 1, /mlp/mlp.0/MatMul_output_0, NVFP4 block-scale underflow"),
    ]


def _run(args: list[str], out: Path) -> dict:
    cmd = [sys.executable, "-m", "cp_debug.cli.main", "bisect", *args, "--json", str(out), "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    row = {"rc": proc.returncode, "wall_s": round(wall, 1)}
    if not out.exists():
        row["error"] = (proc.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1][:300]
        return row
    report = json.loads(out.read_text())
    cand = report["candidates"][-1]
    cause = (report.get("root_cause") or {}).get(cand) or {}
    row.update(outcome=report.get("outcome"), judged_at=(report.get("judged_at") or {}).get(cand),
               root_cause=cause.get("probe"), hint=(cause.get("hint") or "")[:240],
               precision=" ".join((report.get("precision") or {}).get(cand, {}).get("notes") or [])[:400])
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="")
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = _files(work)
        only = {n for n in a.only.split(",") if n}
        for name, args, expect in _cases(files):
            if only and name not in only:
                continue
            for dev in a.devices.split(","):
                row = {"case": name, "device": dev, "expect": expect,
                       **_run([x.replace("{dev}", dev) for x in args], work / f"{name}_{dev}.json")}
                rows.append(row)
                print(f"{name:20s} {dev:4s} rc={row['rc']} {row.get('wall_s')}s {row.get('outcome')} "
                      f"{row.get('judged_at')} rc@ {row.get('root_cause')} | {row.get('hint') or row.get('error')}"
                      f"{' | ' + row['precision'][-200:] if 'runtime' in row.get('precision', '') else ''}",
                      flush=True)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
