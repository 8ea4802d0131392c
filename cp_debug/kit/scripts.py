"""The kit's scripts for the target (`run_trtexec.sh`, `run_polygraphy.sh`) and its README, from the manifest.

trtexec, as TensorRT's `samples/common` reads its flags (sampleOptions.cpp): `--loadInputs=name:file` fills each input
from raw bytes (`loadFromFile` in sampleUtils.cpp: the file must hold exactly the binding's bytes);
`--loadRefOutputs=name:file` (TensorRT >= 11.1, `loadRefOutputsImpl` in sampleInference.cpp) reads each output's raw
bytes in the engine's output dtype and needs `--accuracyThreshold` > 0; with `--accuracyAlgorithm=l0` the loss is the
share of elements beyond `--atol + --rtol*|ref|`, cp_debug's own rule, and an output fails at a share >= the threshold
(`accuracy_threshold` turns cp_debug's `> max_share` into that). Debug tensors (`--markUnfusedTensorsAsDebugTensors`
at build, `--saveAllDebugTensors=numpy,summary` at run time, TensorRT >= 10.12: one .npy per tensor and
`tensor_summary.json`, which names each file's tensor exactly) are written to the working directory, so each run
starts in its results folder. `--stronglyTyped` is needed on TensorRT 10 and a deprecated no-op on 11, where every
network is strongly typed: precision comes from the ONNX file alone.

Polygraphy: `--load-inputs` takes the JSON list of feeds, `--save-outputs FILE.json` writes a RunResults;
`--mark-unfused-tensors-as-debug-tensors` (polygraphy >= 0.49.26, checked by the script) marks the unfused tensors at
build, but no polygraphy up to 0.53.6 turns their debug state on at run time (its TrtRunner calls
`set_all_tensors_debug_state`, never `set_unfused_tensors_debug_state`; NvInferRuntime.h: the unfused tensors' state
is a switch of its own, off by default), so `--trt` hands back the engine's outputs: per-layer values come from
trtexec. `--onnxrt --onnx-outputs '*'` (`mark all` before polygraphy 0.50, which deprecates it for removal in 0.55)
runs ONNX Runtime in TensorRT's place with every tensor an output (the check that needs no GPU).

Every flag of both scripts is checked against TensorRT's and polygraphy's sources at the versions in
`TRTEXEC_CHECKED` / `POLYGRAPHY_CHECKED` (`tests/kit/test_kit_sources.py`, lists from `benchmarks/trt_sources.py`).
"""

from __future__ import annotations

import math
import re
import shlex
import struct
import textwrap

from cp_debug.backends.kit import kit_files as kf
from cp_debug.backends.trt.trt_profile import ShapeRange, shape_text, trtexec_shape_flags

DEBUG_TENSORS_FROM = 101200  # TensorRT 10.12: markUnfusedTensorsAsDebugTensors, saveAllDebugTensors
REF_OUTPUTS_FROM = 110100  # TensorRT 11.1: --loadRefOutputs
POLYGRAPHY_DEBUG_FROM = "0.49.26"  # polygraphy: --mark-unfused-tensors-as-debug-tensors (CHANGELOG, 0.49.26)
POLYGRAPHY_STAR_FROM = "0.50.0"  # polygraphy reads --onnx-outputs '*' as every tensor ('mark all' before; gone in 0.55)
# the versions whose sources every flag of the scripts was checked against (tests/kit/test_kit_sources.py)
TRTEXEC_CHECKED = ("v10.0.0", "v11.1")  # every NVIDIA/TensorRT release tag between, samples/common/sampleOptions.cpp
DEBUG_FILES_CHECKED = ("v10.12.0", "v11.1")  # samples/common/debugTensorWriter.cpp, common.h
POLYGRAPHY_CHECKED = ("0.49.9", "0.53.6")  # tools/Polygraphy at the tags, PyPI's 0.49.26, 0.50.3, 0.53.4, 0.53.6


def bisect_command(m: kf.Manifest, precision: str, kit) -> str:
    """The command that reads the target's results back: the kit's recipe's (its `kit` plug-in `kit`'s
    `bisect_command`; TransFusion-L's one graph: on its ONNX file and the first frame's inputs, against ONNX
    Runtime)."""
    return kit.bisect_command(m, precision)


def _profile(m: kf.Manifest, stage: str) -> dict[str, ShapeRange]:
    return {n: ShapeRange(tuple(r["min"]), tuple(r["opt"]), tuple(r["max"])) for n, r in m.profile[stage].items()}


def _poly_shapes(prof: dict[str, ShapeRange], key: str) -> str:
    """`name:[a,b]` per input, quoted: unquoted, bash reads `[a,b]` as a glob and a file named `name:a` replaces it."""
    return " ".join(shlex.quote(f"{n}:[{','.join(str(d) for d in getattr(r, key))}]") for n, r in prof.items())


def _float32_above(x: float) -> float:
    """The smallest float32 above `x` (>= 0), as a float: what trtexec's `std::stof` reads back from its text."""
    if x <= 0:
        return 2.0 ** -126  # the smallest normal float (a subnormal one may make std::stof throw out_of_range)
    f = struct.unpack("<f", struct.pack("<f", x))[0]  # the nearest float32
    while f <= x:
        f = struct.unpack("<f", struct.pack("<I", struct.unpack("<I", struct.pack("<f", f))[0] + 1))[0]
    return f


def accuracy_threshold(max_share: float) -> float:
    """trtexec's `--accuracyThreshold` for cp_debug's rule. cp_debug calls an output diverged when its share of
    elements beyond tolerance is > max_share (any element where max_share is 0: compare/diff.py); trtexec 11.1 fails
    it when that share, a double, is >= the threshold, a float (sampleInference.cpp, sampleOptions.h). The smallest
    float above max_share makes the two agree wherever no share lies strictly between them (`threshold_exact`)."""
    return _float32_above(float(max_share))


def threshold_exact(max_share: float, threshold: float, n: int) -> bool:
    """Whether trtexec's `count/n >= threshold` and cp_debug's `count/n > max_share` agree for every count of an
    n-element output (they part only where a share lies in (max_share, threshold): outputs of many million
    elements)."""
    count = math.floor(max_share * n)
    while count > 0 and count / n > max_share:
        count -= 1
    while count <= n and count / n <= max_share:
        count += 1  # the fewest elements beyond tolerance that cp_debug calls diverged
    return count > n or count / n >= threshold


_HEAD = """\
#!/usr/bin/env bash
# {what}
# Written by cp_debug {version} (`cpdebug trt-kit`) on {created}. Run it on the target, from anywhere:
#   bash {name} [PRECISION] {usage}
# PRECISION: {precisions} (default {first}). Then copy the kit's results/ folder back next to manifest.json and run
#   {back}  (see README.md)
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


def polygraphy_script(m: kf.Manifest, kit) -> str:
    name = kf.POLYGRAPHY_SCRIPT
    out = [_HEAD.format(what="Runs each stage of this kit with Polygraphy: TensorRT (--trt, the default) or ONNX "
                             "Runtime in its place (--onnxrt).", version=m.cp_debug, created=m.created, name=name,
                        usage="[--onnxrt] [--trt-major 10|11]", precisions="|".join(m.precisions),
                        first=m.precisions[0], back=bisect_command(m, "PRECISION", kit))]
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
    out.append(_polygraphy_version_check())
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
        inputs = shlex.quote(kf.polygraphy_inputs(s.name))
        saved = kf.polygraphy_results("$precision", s.name)
        out.append(f"""\
# -- {s.name}
{_onnx_case(m, s.name, "onnx")}
echo "run_polygraphy.sh: {s.name} ($precision, $runner)"
if [ "$runner" = onnxrt ]; then
  polygraphy run "$onnx" --onnxrt --onnx-outputs "${{every[@]}}" --load-inputs {inputs} --save-outputs "{saved}"
else
  polygraphy run "$onnx" --trt "${{typed[@]}}" --mark-unfused-tensors-as-debug-tensors \\
    --trt-min-shapes {_poly_shapes(prof, "min")} --trt-opt-shapes {_poly_shapes(prof, "opt")} \\
    --trt-max-shapes {_poly_shapes(prof, "max")} --load-inputs {inputs} --save-outputs "{saved}"
fi
""")
    out.append(_FINISH.format(ran_cases=_ran_cases(m), ran=kf.RAN, name=name))
    return _empty_ok("".join(out))


def _polygraphy_version_check() -> str:
    """The lines that read polygraphy's version: `--trt` stops on one without --mark-unfused-tensors-as-debug-tensors
    (and says what a polygraphy run with TensorRT hands back); `--onnxrt` asks for every tensor as that version
    reads it (`mark all` before 0.50; `*` from 0.50, which deprecates `mark all` for removal in 0.55)."""
    def number(v: str) -> int:
        a, b, c = (int(x) for x in v.split("."))
        return a * 1000000 + b * 1000 + c

    return f"""\
# polygraphy's version ("Polygraphy | Version: X.Y.Z | Path: ...": every version checked prints it so)
pv=$(polygraphy --version 2>&1 | grep -o 'Version: [0-9]*\\.[0-9]*\\.[0-9]*' | head -n 1 | cut -d' ' -f2 || true)
pnum=999999999  # not read: a later polygraphy
if [ -n "$pv" ]; then IFS=. read -r pa pb pc <<< "$pv"; pnum=$((10#$pa * 1000000 + 10#$pb * 1000 + 10#$pc)); fi
every=("*")  # --onnx-outputs: every tensor
if [ "$pnum" -lt {number(POLYGRAPHY_STAR_FROM)} ]; then every=(mark all); fi
if [ "$runner" = trt ]; then
  if [ -z "$pv" ]; then
    echo "run_polygraphy.sh: cannot read polygraphy's version from 'polygraphy --version'; going on" \\
      "(--trt needs {POLYGRAPHY_DEBUG_FROM} or later)" >&2
  elif [ "$pnum" -lt {number(POLYGRAPHY_DEBUG_FROM)} ]; then
    echo "run_polygraphy.sh: polygraphy $pv is too old for --trt: --mark-unfused-tensors-as-debug-tensors needs" \\
      "{POLYGRAPHY_DEBUG_FROM} or later (pip install -U polygraphy), or run --onnxrt" >&2
    exit 2
  fi
  # polygraphy (up to {POLYGRAPHY_CHECKED[1]} at least) marks the unfused tensors at build but never turns their
  # debug state on (its TrtRunner calls set_all_tensors_debug_state only): the engine's outputs, not per-layer values
  echo "run_polygraphy.sh: --trt saves the engine's outputs only (polygraphy turns on no unfused debug tensor);" \\
    "per-layer values: run_trtexec.sh" >&2
fi
"""


def trtexec_script(m: kf.Manifest, kit) -> str:
    name = kf.TRTEXEC_SCRIPT
    out = [_HEAD.format(what="Builds one engine per stage with trtexec (strongly typed, debug tensors of every "
                             "unfused tensor) and runs it on every frame of this kit.", version=m.cp_debug,
                        created=m.created, name=name, usage="[--trt-major 10|11]", precisions="|".join(m.precisions),
                        first=m.precisions[0], back=bisect_command(m, "PRECISION", kit))]
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
  debug_build=(--markUnfusedTensorsAsDebugTensors); debug_run=(--saveAllDebugTensors=numpy,summary)
else
  echo "run_trtexec.sh: TensorRT $version has no debug tensors (10.12 and later): only the outputs are saved" >&2
fi
if [ "$version" -ge """ + str(REF_OUTPUTS_FROM) + """ ]; then refcheck=1; fi
failed=0
""")
    tol = m.tolerance
    tol_case = " ".join(f"{p}) tol=(--accuracyAlgorithm=l0 --atol={float(t['atol'])!r} --rtol={float(t['rtol'])!r} "
                        f"--accuracyThreshold={accuracy_threshold(t['max_share']):.9g});;" for p, t in tol.items())
    out.append(f'case "$precision" in {tol_case} esac\n')
    for s in m.stages:
        prof = _profile(m, s.name)
        build = " ".join(shlex.quote(f) for f in trtexec_shape_flags(prof))
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
( cd "$run" && "$TRTEXEC" --loadEngine="$dir/{s.name}.engine" {shlex.quote("--shapes=" + shapes)} \\
    --loadInputs="{loads}" "${{debug_run[@]}}" --exportOutput={kf.TRTEXEC_OUTPUTS} \\
    --exportLayerInfo={kf.TRTEXEC_LAYERS} --profilingVerbosity=detailed --iterations=1 --warmUp=0 --duration=0 \\
    "${{ref[@]}}" > {kf.TRTEXEC_LOG} 2>&1 ) || {{
  echo "run_trtexec.sh: {s.name} on {f.id} ({f.token}): trtexec reports a failure (accuracy check or run);" \
    "see $run/{kf.TRTEXEC_LOG}" >&2
  failed=1; }}
""")
    out.append(_FINISH.format(ran_cases=_ran_cases(m), ran=kf.RAN, name=name))
    out.append('exit "$failed"\n')
    return _empty_ok("".join(out))


def _threshold_text(m: kf.Manifest) -> str:
    """What the README says of trtexec's verdict against cp_debug's: where they agree, and that NaN escapes it."""
    apart = []
    for p, t in m.tolerance.items():
        limit = accuracy_threshold(t["max_share"])
        for s in m.stages:
            for o in s.outputs:
                sizes = {math.prod(shape) for shape in o.shapes.values()}
                if not all(threshold_exact(float(t["max_share"]), limit, n) for n in sizes):
                    apart.append(f"`{o.name}` at {p}")
    where = (" (every output here)" if not apart else
             f" (not quite for {', '.join(apart)}: shares just above max_share pass trtexec there)")
    text = ("trtexec fails an output at a share of elements beyond tolerance >= `--accuracyThreshold`; the script "
            "passes the smallest float above cp_debug's `max_share`, so trtexec fails exactly the outputs cp_debug "
            f"calls diverged{where}. trtexec counts a NaN as no mismatch (it compares false): cp_debug finds NaN "
            "when it reads the outputs back.")
    return textwrap.fill(text, width=116)


def _frames_layout(m: kf.Manifest) -> str:
    """The Layout's line of the frames' own files, as the kit holds them (issue 117: a --torch/--onnx kit's README
    named a `frames/` folder it lacks: its samples are .npz inputs)."""
    lines = []
    if any(f.points.startswith("frames/") for f in m.frames):
        lines.append("frames/<frame>.npy                       each frame's points as the model reads them\n")
    if any(f.points.startswith("inputs/") and f.points.endswith(".npz") for f in m.frames):
        lines.append("inputs/<frame>/<stage>.npz               each frame's inputs as given (bisect --inputs)\n")
    return "".join(lines)


def readme(m: kf.Manifest, kit) -> str:
    """The kit's README.md: what it holds and how to run it, the recipe's part from its `kit` plug-in `kit`."""
    frames = "\n".join(f"| `{f.id}` | {f.token} | {f.source} |" for f in m.frames)
    stages = "\n".join(f"| `{s.name}` | " + ", ".join(f"`{t.name}` {t.dtype}" for t in s.inputs) + " | "
                       + ", ".join(f"`{t.name}`" for t in s.outputs) + " |" for s in m.stages)
    first = m.precisions[0]
    return f"""# A cp_debug kit for the target

Written by cp_debug {m.cp_debug} on {m.created}. The ONNX files hold {m.held_precision}; the scripts run
{', '.join(m.precisions)}. Nothing here needs cp_debug on the target: only `trtexec` or `polygraphy`.
{kit.readme_text(m)}
## On the target
```
bash run_trtexec.sh {first}              # trtexec: one engine per stage, every frame, debug tensors, layer info
bash run_polygraphy.sh {first}           # or polygraphy with TensorRT: the engine's outputs only (see below)
bash run_polygraphy.sh {first} --onnxrt  # polygraphy with ONNX Runtime in TensorRT's place (no GPU needed)
```
Each script takes `--trt-major 10|11` where it cannot tell TensorRT's version. Both build strongly typed networks:
the precision is the ONNX file's own (TensorRT 11 has no other way). trtexec checks the outputs against the
reference by itself on TensorRT >= 11.1 (`--loadRefOutputs`, cp_debug's tolerances): a failing frame is named.
{_threshold_text(m)}

Per-layer values come from `run_trtexec.sh` (TensorRT >= 10.12: `--markUnfusedTensorsAsDebugTensors`,
`--saveAllDebugTensors=numpy,summary`). `run_polygraphy.sh` (without `--onnxrt`) hands back the engine's outputs
only: it passes `--mark-unfused-tensors-as-debug-tensors` (polygraphy >= {POLYGRAPHY_DEBUG_FROM}; the script stops an
older one), which marks the unfused tensors at build, but polygraphy's TrtRunner (0.49.26 to 0.53.6, read in their
sources) turns on `set_all_tensors_debug_state` only, never `set_unfused_tensors_debug_state`, the switch TensorRT's
`NvInferRuntime.h` gives the unfused tensors (off by default), so none of them reaches its listener.

## Versions checked
Every flag these scripts pass was checked against the tools' own sources, at every version the scripts' gates admit
(`tests/kit/test_kit_sources.py` in cp_debug, lists read by `benchmarks/trt_sources.py`):
- `run_trtexec.sh`: TensorRT {TRTEXEC_CHECKED[0]} to {TRTEXEC_CHECKED[1]} (every release tag of NVIDIA/TensorRT
  between, `samples/common/sampleOptions.cpp`); the debug-tensor files it leaves against `debugTensorWriter.cpp`
  and `common.h` at {DEBUG_FILES_CHECKED[0]} to {DEBUG_FILES_CHECKED[1]}; the reference check against
  `sampleInference.cpp` at {TRTEXEC_CHECKED[1]}. Later TensorRT versions were not checked.
- `run_polygraphy.sh`: polygraphy {POLYGRAPHY_CHECKED[0]} to {POLYGRAPHY_CHECKED[1]} (the argument groups of each
  version: those shipped in NVIDIA/TensorRT's tools/Polygraphy at the tags above, and PyPI's 0.49.26, 0.50.3, 0.53.4,
  0.53.6; PyPI has no 0.51 or 0.52); `--onnxrt` runs with all of them (every tensor asked for as `*` from
  {POLYGRAPHY_STAR_FROM}, as `mark all` before), TensorRT with {POLYGRAPHY_DEBUG_FROM} and later.

## Back on the machine with cp_debug
Copy `results/` into this folder (next to `manifest.json`), then
```
{bisect_command(m, first, kit)}{kit.BISECT_SUFFIX}
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
<stage>.onnx                             the ONNX as given; <precision>/<stage>.onnx: converted copies
{_frames_layout(m)}inputs/<frame>/<stage>/<input>.raw       trtexec --loadInputs (raw, C order)
inputs/<stage>.polygraphy.json           polygraphy --load-inputs (one feed per frame)
reference/<frame>/<stage>/<output>.raw   trtexec --loadRefOutputs
results/<precision>/...                  written by the scripts on the target
```
"""
