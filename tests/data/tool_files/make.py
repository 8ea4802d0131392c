"""Generate the tool-file corpus: run the real tools, each in a virtual environment of its own, on the models of
models.py, and write their files under <model>/<variant>/<tool>/ with cases.json beside them (README.md).

Run by hand, never by the tests (the suite reads what this wrote, without the tools):

    python tests/data/tool_files/make.py            # venvs under ~/.cache/cp_debug/tool-venvs, then every case
    python tests/data/tool_files/make.py --only bert/planted

Each venv is made with --system-site-packages so torch is not downloaded again; what a tool pins for itself
(ModelOpt's onnxruntime-gpu and onnx, optimum's transformers) is installed inside its venv and shadows the
base's, and every stage records what it really imported. The FP32 files come first (optimum's exporter for BERT,
torch.onnx.export for the CNN, plus a dynamo export of each); every other tool starts from them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAGES = HERE / "stages"
VENVS = Path(os.environ.get("CP_DEBUG_TOOL_VENVS", Path.home() / ".cache/cp_debug/tool-venvs"))
# venv name → the pinned requirements installed into it (with the base's site-packages visible under them).
# "--ignore-installed" first: the tool and its dependencies go into the venv even where the base has them.
# optimum's transformers 4.57 pins huggingface_hub < 1, which a newer diffusers in the base cannot import
# (optimum imports diffusers when it is there): the venv gets a diffusers of that hub's time.
TOOLS = {
    "modelopt": ["nvidia-modelopt[onnx]==0.47.0"],
    "optimum": ["optimum-onnx[onnxruntime]==0.1.0", "diffusers==0.35.2"],
    "ortquant": ["--ignore-installed", "onnxruntime==1.32.0"],
    "polygraphy": ["--ignore-installed", "polygraphy==0.53.6", "onnxconverter-common==1.16.0"],
    "onnxconverter": ["--ignore-installed", "onnxconverter-common==1.16.0"],
    "onnxslim": ["onnxslim==0.1.98"],
    "onnxsim": ["onnxsim==0.8.1"],
}
FP32 = {"bert": "optimum-export/model.onnx", "cnn": "torch-export/model.onnx"}
VARIANTS = {"bert": ("healthy", "planted"), "cnn": ("healthy", "planted", "outlier")}
# (variant, tool) → why that combination is not made (cases.json lists these as skipped cases)
SKIP = {
    ("planted", "torch-dynamo"): "one dynamo export a model (the healthy one) keeps the corpus small; the planted "
                                 "weights change no graph",
    ("outlier", "torch-dynamo"): "as for planted: one dynamo export a model",
    ("outlier", "polygraphy-fp16"): "the outlier variant is for INT8/FP8: nothing in it nears FP16's range, its "
                                    "FP16 files would repeat the healthy ones",
    ("outlier", "onnxconverter-fp16"): "as for polygraphy-fp16: the outlier variant is for INT8/FP8",
    ("outlier", "onnxconverter-fp16-keepio"): "as for polygraphy-fp16: the outlier variant is for INT8/FP8",
    ("outlier", "onnxslim"): "FP32 rewrites of the outlier variant say nothing the planted one's do not",
    ("outlier", "onnxsim"): "FP32 rewrites of the outlier variant say nothing the planted one's do not",
}


def venv_python(name: str) -> Path:
    """The venv's python, made and installed on first use (pip with the pins of TOOLS[name])."""
    py = VENVS / name / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(VENVS / name)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *TOOLS[name]], check=True)
    return py


def warning_lines(text: str) -> list[str]:
    """The lines of a tool's stderr/stdout that warn, deduplicated, in order (at most 30)."""
    seen: list[str] = []
    for line in text.splitlines():
        s = line.strip()
        s = s.replace(str(VENVS), "<venvs>")
        if s and "warn" in s.lower() and s not in seen and not s.startswith(("RESULT: ", "warnings.warn(")):
            seen.append(s[:400])
    return seen[:30]


def run(cmd: list[str]) -> tuple[dict, str]:
    """Run a stage or a CLI; (the stage's RESULT dict or {}, its stderr+stdout). A failure is an 'error' field."""
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=STAGES, timeout=900,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(STAGES)})
    out = {}
    for line in p.stdout.splitlines():
        if line.startswith("RESULT: "):
            out = json.loads(line[len("RESULT: "):])
    text = p.stderr + p.stdout
    if p.returncode != 0:
        tail = [s for s in text.strip().splitlines() if s.strip()][-6:]
        out["error"] = f"exit {p.returncode}: " + " | ".join(tail)[:1500]
    return out, text


def stage(venv: str | None, script: str, **args) -> dict:
    """A stage script run by `venv`'s python (None: this python, for the torch exports)."""
    py = str(venv_python(venv)) if venv else sys.executable
    res, text = run([py, str(STAGES / script), json.dumps(args)])
    res["warnings"] = res.get("warnings", []) + warning_lines(text)
    res["venv"] = venv or "project"
    return res


def cli(venv: str, argv: list[str], dists: list[str]) -> dict:
    """A tool's command line from its venv's bin/, and the versions that venv holds."""
    exe = VENVS / venv / "bin" / argv[0]
    venv_python(venv)
    res, text = run([str(exe), *argv[1:]])
    res["call"] = " ".join([argv[0], *(Path(a).name if "/" in a else a for a in argv[1:])])
    res["warnings"] = warning_lines(text)
    res["versions"] = stage(venv, "versions.py", dists=dists).get("versions", {})
    res["venv"] = venv
    return res


def plan(model: str, variant: str) -> list[tuple[str, str, object]]:
    """(tool folder, file name, thunk) of every case of one model and variant, FP32 files first."""
    d = HERE / model / variant
    src = str(d / FP32[model])
    calib = str(HERE / f"{model}_calib.npz")
    build = f"build_{model}" + ("" if variant == "healthy" else f"_{variant}")
    out = lambda tool, f="model.onnx": str(d / tool / f)  # noqa: E731
    cases: list = []
    if model == "bert":
        cases += [("optimum-export", "model.onnx", lambda: stage("optimum", "optimum_stage.py", op="export",
                                                                 build=build, out_dir=str(d / "optimum-export")))]
    else:
        cases += [("torch-export", "model.onnx", lambda: stage(None, "export_torch.py", build=build,
                                                               out=out("torch-export"), dynamo=False, opset=17))]
    cases += [("torch-dynamo", "model.onnx", lambda: stage(None, "export_torch.py", build=build,
                                                           out=out("torch-dynamo"), dynamo=True, opset=18))]
    if model == "bert":
        cases += [
            ("ort-quantize-dynamic", "model.onnx",
             lambda: stage("ortquant", "ort_quant.py", op="dynamic", src=src, out=out("ort-quantize-dynamic"))),
            ("optimum-ortquantizer-dynamic", "model_quantized.onnx",
             lambda: stage("optimum", "optimum_stage.py", op="quantize", src=src,
                           out_dir=str(d / "optimum-ortquantizer-dynamic"))),
        ]
    else:
        for fmt in ("QDQ", "QOperator"):
            cases += [(f"ort-quantize-static-{fmt.lower()}", "model.onnx",
                       lambda fmt=fmt: stage("ortquant", "ort_quant.py", op="static", src=src, format=fmt,
                                             calib=calib, out=out(f"ort-quantize-static-{fmt.lower()}")))]
    for mode in ("int8", "fp8"):
        cases += [(f"modelopt-{mode}", "model.onnx",
                   lambda mode=mode: stage("modelopt", "modelopt_quant.py", src=src, mode=mode, calib=calib,
                                           out=out(f"modelopt-{mode}")))]
    cases += [
        ("polygraphy-fp16", "model.onnx",
         lambda: cli("polygraphy", ["polygraphy", "convert", src, "--fp-to-fp16", "-o", out("polygraphy-fp16")],
                     ["polygraphy", "onnxconverter-common", "onnx", "onnxruntime"])),
        ("onnxconverter-fp16", "model.onnx",
         lambda: stage("onnxconverter", "fp16.py", src=src, out=out("onnxconverter-fp16"), keep_io_types=False)),
    ]
    if model == "cnn":
        cases += [("onnxconverter-fp16-keepio", "model.onnx",
                   lambda: stage("onnxconverter", "fp16.py", src=src, out=out("onnxconverter-fp16-keepio"),
                                 keep_io_types=True))]
    cases += [
        ("onnxslim", "model.onnx", lambda: _mkdir_then(out("onnxslim"), lambda: cli(
            "onnxslim", ["onnxslim", src, out("onnxslim")], ["onnxslim", "onnx", "onnxruntime"]))),
        ("onnxsim", "model.onnx", lambda: _mkdir_then(out("onnxsim"), lambda: cli(
            "onnxsim", ["onnxsim", src, out("onnxsim")], ["onnxsim", "onnx", "onnxruntime"]))),
    ]
    return cases


def _mkdir_then(path: str, thunk):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return thunk()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="MODEL/VARIANT[/TOOL] prefix of the cases to (re)make")
    ap.add_argument("--answers-only", action="store_true", help="keep the files, recompute cases.json")
    a = ap.parse_args(argv)
    raw_path = HERE / "stages" / "runs.json"  # what the tools said, kept so the answers can be redone alone
    runs = json.loads(raw_path.read_text()) if raw_path.exists() else {}
    if not a.answers_only:
        for model in ("bert", "cnn"):
            for variant in VARIANTS[model]:
                for tool, fname, thunk in plan(model, variant):
                    key = f"{model}/{variant}/{tool}"
                    if not key.startswith(a.only):
                        continue
                    if (variant, tool) in SKIP:
                        runs[key] = {"skipped": SKIP[variant, tool]}
                        continue
                    shutil.rmtree(HERE / model / variant / tool, ignore_errors=True)
                    print(f"== {key}", flush=True)
                    res = thunk()
                    res["file"] = f"{key}/{fname}"
                    res["files"] = sorted(str(f.relative_to(HERE)) for f in (HERE / key).rglob("*") if f.is_file())
                    runs[key] = res
                    print(json.dumps({k: res.get(k) for k in ("error", "warnings")})[:600], flush=True)
                    raw_path.write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")
        raw_path.write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")  # the skipped ones too
    sys.path.insert(0, str(STAGES))
    from answers import write_cases  # the project's python: onnxruntime 1.32, torch, models.py
    write_cases(runs, HERE / "cases.json")


if __name__ == "__main__":
    main()
