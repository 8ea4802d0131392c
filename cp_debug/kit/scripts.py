"""The kit's scripts for the target (`run_trtexec.sh`, `run_polygraphy.sh`) and its README, from the manifest.

trtexec, as TensorRT's `samples/common` reads its flags (sampleOptions.cpp): `--loadInputs=name:file` fills each input
from raw bytes (`loadFromFile` in sampleUtils.cpp: the file must hold exactly the binding's bytes);
`--loadRefOutputs=name:file` (TensorRT >= 11.1, `loadRefOutputsImpl` in sampleInference.cpp) reads each output's raw
bytes in the engine's output dtype and needs `--accuracyThreshold` > 0; with `--accuracyAlgorithm=l0` the loss is the
share of elements beyond `--atol + --rtol*|ref|`, cp_debug's own rule. Debug tensors
(`--markUnfusedTensorsAsDebugTensors` at build, `--saveAllDebugTensors=numpy` at run time, TensorRT >= 10.12) are
written to the working directory, so each run starts in its results folder. `--stronglyTyped` is needed on TensorRT 10
and a deprecated no-op on 11, where every network is strongly typed: precision comes from the ONNX file alone.

Polygraphy (0.53.6's CLI): `--load-inputs` takes the JSON list of feeds, `--save-outputs FILE.json` writes a RunResults,
`--mark-unfused-tensors-as-debug-tensors` adds the debug tensors to it (`--trt`); `--onnxrt --onnx-outputs mark all`
runs ONNX Runtime in TensorRT's place (the check that needs no GPU).
"""

from __future__ import annotations

import re
import shlex

from cp_debug.backends import kit_files as kf
from cp_debug.backends.trt_profile import ShapeRange, shape_text, trtexec_shape_flags

DEBUG_TENSORS_FROM = 101200  # TensorRT 10.12: markUnfusedTensorsAsDebugTensors, saveAllDebugTensors
REF_OUTPUTS_FROM = 110100  # TensorRT 11.1: --loadRefOutputs


def _profile(m: kf.Manifest, stage: str) -> dict[str, ShapeRange]:
    return {n: ShapeRange(tuple(r["min"]), tuple(r["opt"]), tuple(r["max"])) for n, r in m.profile[stage].items()}


def _poly_shapes(prof: dict[str, ShapeRange], key: str) -> str:
    return " ".join(f"{n}:[{','.join(str(d) for d in getattr(r, key))}]" for n, r in prof.items())


_HEAD = """\
#!/usr/bin/env bash
# {what}
# Written by cp_debug {version} (`cpdebug trt-kit`) on {created}. Run it on the target, from anywhere:
#   bash {name} [PRECISION] {usage}
# PRECISION: {precisions} (default {first}). Then copy the kit's results/ folder back next to manifest.json and run
#   cpdebug bisect --backends torch,trt-PRECISION@KIT --points KIT/frames/frame_000.npy  (see README.md)
set -euo pipefail
cd "$(dirname "$0")"
KIT=$(pwd)
precision={first}
"""

_PRECISION_CASE = """\
case "$precision" in
  {choices}) ;;
  *) echo "{name}: this kit holds no $precision files (it has: {precisions})" >&2; exit 2;;
esac
results="results/$precision"
rm -f "$results/{ran}"  # a run that stops half way must not look finished
"""

_FINISH = """\
# what this run read, for `cpdebug` to check the results against the kit (written last: its presence = finished)
case "$precision" in
{ran_cases}
esac
sha256sum "${{ran_files[@]}}" > "$results/{ran}.tmp"
mv "$results/{ran}.tmp" "$results/{ran}"
echo "{name}: done; copy $KIT/results back into the kit on the machine running cp_debug"
"""


def _arg_loop(name: str, extra: str, usage: str) -> str:
    """The scripts' arguments: a precision, --trt-major, -h, and `extra` case arms."""
    return f"""major=""
while [ $# -gt 0 ]; do
  case "$1" in
{extra}    --trt-major) major="${{2:-}}"; shift;;
    -h|--help) sed -n 2,6p "$0"; exit 0;;
    -*) echo "{name}: unknown option $1 (usage: {usage})" >&2; exit 2;;
    *) precision="$1";;
  esac
  shift
done
"""


def _ran_cases(m: kf.Manifest) -> str:
    lines = []
    for p in m.precisions:
        files = " ".join(shlex.quote(f) for f in m.ran_files(p))
        lines.append(f"  {p}) ran_files=({files});;")
    return "\n".join(lines)


def _onnx_case(m: kf.Manifest, stage: str, var: str) -> str:
    arms = " ".join(f"{p}) {var}={shlex.quote(kf.onnx_path(p, stage, m.held_precision))};;" for p in m.precisions)
    return f'case "$precision" in {arms} esac'


def _empty_ok(text: str) -> str:
    """`"${a[@]}"` as `${a[@]+"${a[@]}"}`: an empty array under `set -u` is an error before bash 4.4."""
    return re.sub(r'"\$\{(\w+)\[@\]\}"', r'${\1[@]+"${\1[@]}"}', text)


def polygraphy_script(m: kf.Manifest) -> str:
    name = kf.POLYGRAPHY_SCRIPT
    out = [_HEAD.format(what="Runs each stage of this kit with Polygraphy: TensorRT (--trt, the default) or ONNX "
                             "Runtime in its place (--onnxrt).", version=m.cp_debug, created=m.created, name=name,
                        usage="[--onnxrt] [--trt-major 10|11]", precisions="|".join(m.precisions),
                        first=m.precisions[0])]
    out.append("""\
runner=trt
""")
    out.append(_arg_loop(name, "    --onnxrt) runner=onnxrt;;\n", "[PRECISION] [--onnxrt] [--trt-major 10|11]"))
    out.append("""\
if ! command -v polygraphy >/dev/null 2>&1; then
  echo "run_polygraphy.sh: polygraphy is not installed here (pip install polygraphy;" \
    "--trt also needs TensorRT's Python bindings)" >&2
  exit 3
fi
""")
    out.append(_PRECISION_CASE.format(choices="|".join(m.precisions), name=name, precisions=", ".join(m.precisions),
                                      ran=kf.RAN))
    out.append("""\
typed=()
if [ "$runner" = trt ]; then
  if [ -z "$major" ]; then
    major=$(python3 -c 'import tensorrt; print(tensorrt.__version__.split(".")[0])' 2>/dev/null || true)
  fi
  case "$major" in
    10) typed=(--strongly-typed);;  # precision from the ONNX file (TensorRT 10 builds weakly typed otherwise)
    11) typed=();;  # TensorRT 11 is strongly typed only
    *) echo "run_polygraphy.sh: cannot tell TensorRT's version (import tensorrt failed): install TensorRT's" \
         "Python bindings, give --trt-major 10|11, or run --onnxrt" >&2; exit 3;;
  esac
fi
mkdir -p "$results/polygraphy"
""")
    for s in m.stages:
        prof = _profile(m, s.name)
        inputs = kf.polygraphy_inputs(s.name)
        saved = kf.polygraphy_results("$precision", s.name)
        out.append(f"""\
# -- {s.name}
{_onnx_case(m, s.name, "onnx")}
echo "run_polygraphy.sh: {s.name} ($precision, $runner)"
if [ "$runner" = onnxrt ]; then
  polygraphy run "$onnx" --onnxrt --onnx-outputs mark all --load-inputs {inputs} --save-outputs "{saved}"
else
  polygraphy run "$onnx" --trt "${{typed[@]}}" --mark-unfused-tensors-as-debug-tensors \\
    --trt-min-shapes {_poly_shapes(prof, "min")} --trt-opt-shapes {_poly_shapes(prof, "opt")} \\
    --trt-max-shapes {_poly_shapes(prof, "max")} --load-inputs {inputs} --save-outputs "{saved}"
fi
""")
    out.append(_FINISH.format(ran_cases=_ran_cases(m), ran=kf.RAN, name=name))
    return _empty_ok("".join(out))


def trtexec_script(m: kf.Manifest) -> str:
    name = kf.TRTEXEC_SCRIPT
    out = [_HEAD.format(what="Builds one engine per stage with trtexec (strongly typed, debug tensors of every "
                             "unfused tensor) and runs it on every frame of this kit.", version=m.cp_debug,
                        created=m.created, name=name, usage="[--trt-major 10|11]", precisions="|".join(m.precisions),
                        first=m.precisions[0])]
    out.append(_arg_loop(name, "", "[PRECISION] [--trt-major 10|11]"))
    out.append("""\
TRTEXEC=${TRTEXEC:-trtexec}
if ! command -v "$TRTEXEC" >/dev/null 2>&1; then
  [ -x /usr/src/tensorrt/bin/trtexec ] && TRTEXEC=/usr/src/tensorrt/bin/trtexec || {
    echo "run_trtexec.sh: trtexec is not found (put it on PATH, or set TRTEXEC=/path/to/trtexec)" >&2; exit 3; }
fi
case "$KIT" in *,*|*:*) echo "run_trtexec.sh: the kit's path $KIT holds ',' or ':', which trtexec's" \
  "--loadInputs cannot carry; move the kit" >&2; exit 2;; esac
""")
    out.append(_PRECISION_CASE.format(choices="|".join(m.precisions), name=name, precisions=", ".join(m.precisions),
                                      ran=kf.RAN))
    out.append("""\
# TensorRT's version from trtexec's banner ("[TensorRT v110100]"), or --trt-major
version=$("$TRTEXEC" --help 2>&1 | grep -o 'TensorRT v[0-9]*' | head -n 1 | tr -dc '0-9' || true)
if [ -z "$version" ]; then
  case "$major" in
    10) version=100000;; 11) version=110000;;
    *) echo "run_trtexec.sh: cannot read TensorRT's version from trtexec's banner; give --trt-major 10|11" >&2; exit 3;;
  esac
fi
typed=(); debug_build=(); debug_run=(); refcheck=0
if [ "$version" -lt 110000 ]; then typed=(--stronglyTyped); fi  # a no-op (deprecated) on TensorRT 11
if [ "$version" -ge """ + str(DEBUG_TENSORS_FROM) + """ ]; then
  debug_build=(--markUnfusedTensorsAsDebugTensors); debug_run=(--saveAllDebugTensors=numpy)
else
  echo "run_trtexec.sh: TensorRT $version has no debug tensors (10.12 and later): only the outputs are saved" >&2
fi
if [ "$version" -ge """ + str(REF_OUTPUTS_FROM) + """ ]; then refcheck=1; fi
failed=0
""")
    tol = m.tolerance
    tol_case = " ".join(f"{p}) tol=(--accuracyAlgorithm=l0 --atol={t['atol']:g} --rtol={t['rtol']:g} "
                        f"--accuracyThreshold={max(float(t['max_share']), 1e-9):g});;" for p, t in tol.items())
    out.append(f'case "$precision" in {tol_case} esac\n')
    for s in m.stages:
        prof = _profile(m, s.name)
        build = " ".join(trtexec_shape_flags(prof))
        out.append(f"""\
# -- {s.name}: one engine (built once), run on every frame
{_onnx_case(m, s.name, "onnx")}
dir="$KIT/{kf.trtexec_folder('$precision')}"
mkdir -p "$dir"
echo "run_trtexec.sh: building {s.name} ($precision, TensorRT $version)"
"$TRTEXEC" --onnx="$KIT/$onnx" --saveEngine="$dir/{s.name}.engine" "${{typed[@]}}" "${{debug_build[@]}}" \\
  --profilingVerbosity=detailed --noTF32 {build} --skipInference > "$dir/{s.name}.build.log" 2>&1 || {{
  echo "run_trtexec.sh: building {s.name} failed; see $dir/{s.name}.build.log" >&2; exit 1; }}
""")
        for f in m.frames:
            shapes = ",".join(f"{t.name}:{shape_text(t.shapes[f.id])}" for t in s.inputs)
            loads = ",".join(f"{t.name}:$KIT/{kf.input_raw(f.id, s.name, t.name)}" for t in s.inputs)
            refs = ",".join(f"{t.name}:$KIT/{kf.reference_raw(f.id, s.name, t.name)}" for t in s.outputs)
            res = kf.trtexec_results("$precision", f.id, s.name)
            out.append(f"""\
run="$KIT/{res}"
rm -rf "$run" && mkdir -p "$run"
ref=()
if [ "$refcheck" = 1 ]; then ref=(--loadRefOutputs="{refs}" "${{tol[@]}}"); fi
( cd "$run" && "$TRTEXEC" --loadEngine="$dir/{s.name}.engine" --shapes={shapes} --loadInputs="{loads}" \\
    "${{debug_run[@]}}" --exportOutput={kf.TRTEXEC_OUTPUTS} --exportLayerInfo={kf.TRTEXEC_LAYERS} \\
    --profilingVerbosity=detailed --iterations=1 --warmUp=0 --duration=0 "${{ref[@]}}" > {kf.TRTEXEC_LOG} 2>&1 ) || {{
  echo "run_trtexec.sh: {s.name} on {f.id} ({f.token}): trtexec reports a failure (accuracy check or run);" \
    "see $run/{kf.TRTEXEC_LOG}" >&2
  failed=1; }}
""")
    out.append(_FINISH.format(ran_cases=_ran_cases(m), ran=kf.RAN, name=name))
    out.append('exit "$failed"\n')
    return _empty_ok("".join(out))


def readme(m: kf.Manifest) -> str:
    frames = "\n".join(f"| `{f.id}` | {f.token} | {f.source} |" for f in m.frames)
    stages = "\n".join(f"| `{s.name}` | " + ", ".join(f"`{t.name}` {t.dtype}" for t in s.inputs) + " | "
                       + ", ".join(f"`{t.name}`" for t in s.outputs) + " |" for s in m.stages)
    first = m.precisions[0]
    return f"""# A cp_debug kit for the target

Written by cp_debug {m.cp_debug} on {m.created}. The ONNX pair holds {m.held_precision}; the scripts run
{', '.join(m.precisions)}. Nothing here needs cp_debug on the target: only `trtexec` or `polygraphy`.

## On the target
```
bash run_trtexec.sh {first}              # trtexec: one engine per stage, every frame, debug tensors, layer info
bash run_polygraphy.sh {first}           # or polygraphy with TensorRT
bash run_polygraphy.sh {first} --onnxrt  # polygraphy with ONNX Runtime in TensorRT's place (no GPU needed)
```
Each script takes `--trt-major 10|11` where it cannot tell TensorRT's version. Both build strongly typed networks:
the precision is the ONNX file's own (TensorRT 11 has no other way). trtexec checks the outputs against the
reference by itself on TensorRT >= 11.1 (`--loadRefOutputs`, cp_debug's tolerances): a failing frame is named.

## Back on the machine with cp_debug
Copy `results/` into this folder (next to `manifest.json`), then
```
cpdebug bisect --backends torch,trt-{first}@KIT --points KIT/frames/frame_000.npy [model options as for the kit]
```
cp_debug checks every file against the manifest's hashes and the results against the files they were computed from
(`results/<precision>/ran.sha256`); anything else is refused in one line.
The target ran each stage on the reference's inputs: a later stage's error is that stage's own.

## Frames
| id | token | source |
|---|---|---|
{frames}

## Stages
| stage | inputs | outputs |
|---|---|---|
{stages}

## Layout
```
manifest.json                            what this kit holds, with the sha256 of every file
<stage>.onnx                             the pair as given; <precision>/<stage>.onnx: converted copies
frames/<frame>.npy                       each frame's points as the model reads them
inputs/<frame>/<stage>/<input>.raw       trtexec --loadInputs (raw, C order)
inputs/<stage>.polygraphy.json           polygraphy --load-inputs (one feed per frame)
reference/<frame>/<stage>/<output>.raw   trtexec --loadRefOutputs
results/<precision>/...                  written by the scripts on the target
```
"""
