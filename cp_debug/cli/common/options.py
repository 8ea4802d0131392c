"""The command-line options several commands share, written once: one name, one flag, one help text each.

A command module takes its shared options from here (`preset: Preset = "demo"`) and writes only its own inline;
command modules never import each other (an import-linter contract in pyproject.toml says so). The options come in
groups (`GROUPS`: the model, inputs, backends, the verdict, a search, INT8 calibration, output, CI, internals), each
one panel of every help page: an option declared here carries its group's panel, and one a command declares itself is
put in it by its name (`cli/common/help.py` `polish`). docs/terms.md's option table gives each shared option's name,
panel, metavar and default; tests/cli/test_option_terms.py reads every help page against it. An option whose text
depends on the command is made here too: by a function that fixes its name, metavar and panel (`calib_option`: what
`--calib` reads), or by `option("--n", help=…)` (in its group's panel; what `--n` counts), the command saying the
rest. No command declares an option two commands share with `typer.Option` (a test says so).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from cp_debug.lidar.record import ModelRecord

# -- the option groups: each a panel of every help page (typer's `rich_help_panel`), the basics first ------------
MODEL = "Model"
INPUT = "Input"
BACKENDS = "Backends"
VERDICT = "Verdict"
CALIBRATION = "INT8 calibration"
SEARCH = "Search"
OUTPUT = "Output"
CI = "CI"
ADVANCED = "Advanced (internals, speed and memory)"

GROUPS = {
    MODEL: "recipe preset config checkpoint random-weights int8 model-factory torch dynamic onnx params onnx-dir fix "
           "encoder backbone",
    INPUT: "points load-dim use-dim inputs data min-shapes max-shapes seed scenes data-root n first-scene eval-n map-n "
           "val-n verify-n detections cuda-centerpoint mmdet3d-pkl lidar-topic objects-topic generate",
    BACKENDS: "backends device deterministic precision keep-fp32",
    VERDICT: "atol rtol tolerance-mode level refine local noise-floor max-rel-rmse max-map-drop max-nds-drop "
             "max-lost-boxes min-match match-distance metric",
    SEARCH: "search-nodes worst-frames",
    CALIBRATION: "calib calib-n method percentile exclude-int8 convtranspose",
    OUTPUT: "out json csv parquet html pictures rrd model-explorer bundle tar max-rows plot quiet verbose",
    CI: "junit budget",
    ADVANCED: "lockstep-mode device-budget memory-budget cudnn-algo no-cache exporter shard-size ray ray-workers "
              "ray-cpus-per-worker bootstrap workers",
}
PANEL_OF = {f"--{name}": panel for panel, names in GROUPS.items() for name in names.split()}
"""The panel of each option by its long name, the same on every command: an option declared here carries it
(`option`), one a command declares itself gets it on its page (`cli/common/help.py` `polish`); an option not named here
is one of the command's own and goes to the command's own panel (`_help.OWN_PANEL`)."""


def option(*names: str, **settings):
    """`typer.Option(*names, ...)` in its group's panel (`PANEL_OF`, by its long name; none: the command's own): how
    every shared option is declared, here or, with its own help, in a command."""
    return typer.Option(*names, rich_help_panel=PANEL_OF.get(max(names, key=len).split("/")[0]), **settings)


# -- the model a run is about ----------------------------------------------------------------------------------
Recipe = Annotated[Optional[str], option("--recipe",
    help="Built-in model recipe: centerpoint (the default) or transfusion (TransFusion-L as Autoware deploys it; "
         "presets transfusion-tiny, transfusion-t4-90m-768, …, or an AWML TransFusion .py config). Without it, a "
         "config file's model.type picks the recipe.")]


def recipe_name(recipe: str | None, config: Path | None = None) -> str:
    """--recipe as given, checked; when not given, the recipe that builds the `--config` file's model.type
    (`recipes.catalog.recipe_of_config`: a TransFusion config needs no --recipe), else the catalog's default. The
    names are the catalog's (`recipes.catalog.built_in`)."""
    from cp_debug.errors import BadInputError
    from cp_debug.recipes import catalog

    if recipe is None and config is not None:
        return catalog.recipe_of_config(config)
    name = recipe or catalog.DEFAULT
    if name not in catalog.built_in():
        raise BadInputError(f"unknown recipe {recipe!r}: the built-in recipes are {', '.join(catalog.built_in())}")
    return name


Preset = Annotated[str, option("--preset",
    help="CenterPoint preset: demo, tiny, awml-base, awml-j6gen2, awml-760, convnextpc-demo.")]


def preset_option(text: str, shown: str | None = "demo"):
    """`--preset` whose default is not a fixed name (None: the demo, or a report's, or the recipe's): the help says
    which, `shown` is the default its page shows (None: none, as lint, which needs --preset or --config)."""
    return option("--preset", help=text, show_default=shown if shown else False)
ConfigFile = Annotated[Optional[Path], option(
    "--config", metavar="FILE.py|FILE.yaml", help="An AWML/mmdet3d config file (.py: mmengine syntax, `_base_` "
    "chains) or an autoware-ml config (.yaml: Hydra defaults lists and interpolations, composed from its config tree; "
    "needs omegaconf); replaces --preset. Nothing in it is imported: cp_debug builds its own modules from the keys.")]
Checkpoint = Annotated[Optional[Path], option("--checkpoint",
    help="mmengine/AWML checkpoint (.pth) or autoware-ml Lightning checkpoint (.ckpt); if omitted, the shipped "
         "trained weights (demo) or seeded random "
         "weights (other presets).")]
RandomWeights = Annotated[bool, option(
    "--random-weights", help="Seeded random weights instead of the preset's shipped trained weights (demo).")]
Seed = Annotated[int, option("--seed", help="Seed for random weights, synthetic scans and generated inputs.")]
SeedOrReport = Annotated[Optional[int], option(
    "--seed", show_default="0", help="Seed of random weights (default 0, or the --from-bisect report's).")]
TorchSeed = Annotated[int, option("--seed", help="Seed for random weights, synthetic scans and generated inputs; a "
                                  "--torch file runs with Python's, numpy's and torch's generators seeded from it.")]
Int8Dir = Annotated[Optional[Path], option(
    "--int8", metavar="DIR", help="CenterPoint as deployed in INT8: a PTQ dir (`cpdebug quantize --out DIR`) or an "
    "AWML PTQ/QAT checkpoint. The model becomes its BN-fused network (FP32: quantizers off); torch-*-int8 runs its "
    "fake quantization, ort-*-int8 its Q/DQ ONNX.")]
ModelFactory = Annotated[Optional[str], option(
    "--model-factory", metavar="FILE.py:FUNC", help="Your own modules as the reference: RUNS FILE.py (your Python "
    "code, with your permissions: name only a file you trust); FUNC() returns "
    "cp_debug.models.centerpoint.factory.UserCenterPoint (voxel encoder, backbone/neck/head, CenterPoint settings). "
    "cp_debug hooks those modules under their own names, exports them as the deployment does and runs its voxelize/"
    "scatter/decode around them. Replaces --preset/--config/--checkpoint.")]
TorchModel = Annotated[Optional[str], option(
    "--torch", help="FILE.py:FUNC returning (module, example_inputs), or the module alone with --inputs; exported to "
    "ONNX for ONNX backends.")]
OnnxModel = Annotated[Optional[Path], option("--onnx", help="An ONNX model (FP32; ONNX backends only).")]
Dynamic = Annotated[Optional[list[str]], option(
    "--dynamic", metavar="NAME:AXIS[,AXIS]", help="With --torch: these axes of input NAME are dynamic in the export "
    "(x:1, input_ids:0,1; name an axis x:1=seq, axes of one name one size), so samples of any size along them run; "
    "repeat per input. Default: a dynamic() beside FUNC in FILE.py (torch.export's dynamic_shapes), else the axes "
    "the samples' shapes differ in from the example's (said), else none (the example's shape).")]


def dynamic_axes(texts: list[str] | None, torch_model: str | None):
    """--dynamic parsed (`export.dynamic.parse_dynamic`; None where not given), refused without --torch."""
    from cp_debug.errors import BadInputError
    from cp_debug.export.dynamic import parse_dynamic

    if texts and not torch_model:
        raise BadInputError("--dynamic goes with --torch FILE.py:FUNC (an --onnx file's axes are its own)")
    return parse_dynamic(texts)
Inputs = Annotated[Optional[Path], option(
    "--inputs", metavar="PATH", help="With --torch/--onnx: the inputs to run, one .npz (keys = input names or input0, "
    "input1, …); random with --seed if omitted.")]
Exporter = Annotated[str, option("--exporter",
    help="For --torch: auto (torch.export, then TorchScript), dynamo, torchscript.")]
NoCache = Annotated[bool, option(
    "--no-cache", help="Export and trace the model again instead of reading its ONNX graphs and module traces from "
    "the cache ($CPDEBUG_CACHE_DIR, default ~/.cache/cp_debug; same as CPDEBUG_NO_CACHE=1).")]


def no_cache(flag: bool) -> None:
    """--no-cache: the caches are off for this process and the processes it starts (`CPDEBUG_NO_CACHE`)."""
    if flag:
        import os

        from cp_debug.export.cache import NO_CACHE_ENV

        os.environ[NO_CACHE_ENV] = "1"


def model_record(preset: str, config: Path | None, checkpoint: Path | None = None, *, random_weights: bool = False,
                 seed: int = 0, int8: Path | None = None, factory: str | None = None) -> ModelRecord:
    """The model options of a command (--preset, --config, --checkpoint, --random-weights, --seed, --int8,
    --model-factory) as the one record every report stores; --config, which must be an existing .py or .yaml file,
    replaces --preset; --model-factory replaces both and takes no weights options. Loads nothing (runs no file)."""
    from cp_debug.errors import BadInputError
    from cp_debug.lidar.record import ModelRecord, model_name

    if factory is not None:
        given = [o for o, v in (("--config", config), ("--checkpoint", checkpoint), ("--random-weights",
                                random_weights), ("--int8", int8)) if v]
        if given:
            raise BadInputError(f"--model-factory builds its own modules and weights: drop {', '.join(given)}")
        return ModelRecord.of(None, seed=seed, factory=factory)
    return ModelRecord.of(model_name(preset, config), config=config, checkpoint=checkpoint,
                          random_weights=random_weights, seed=seed, int8=int8)


AutowareParams = Annotated[Optional[list[Path]], option(
    "--params", metavar="FILE", help="Autoware's parameter files of the deployment (*.param.yaml: ml_package, "
    "centerpoint_common, a manifest; repeatable): checked against the model and the deployed pair first "
    "(`cpdebug lint`); a SPEC@DIR folder's own *.param.yaml files are checked without it. TransFusion-L: "
    "transfusion.param.yaml's score threshold, circle / IoU NMS and yaw thresholds make the boxes the verdict "
    "judges.")]


RotY = Annotated[Optional[bool], option(
    "--rot-y-axis-reference", show_default="off", help="Head outputs in AWML's y-axis reference: dim as [w,l,h], rot "
    "as [-cos,-sin] (infer: as its ONNX files were exported, else off; --no-rot-y-axis-reference: off).")]
# its negative, off whatever the ONNX files say: taken, not shown (on a page of 80 columns the pair broke the names)
NoRotY = Annotated[bool, option("--no-rot-y-axis-reference", hidden=True)]


def rot_y(on: bool | None, off: bool) -> bool | None:
    """--rot-y-axis-reference / --no-rot-y-axis-reference as one value: True, False, or None (neither given)."""
    if on and off:
        from cp_debug.errors import BadInputError

        raise BadInputError("give --rot-y-axis-reference or --no-rot-y-axis-reference, not both")
    return False if off else on


# -- the scan --------------------------------------------------------------------------------------------------
Points = Annotated[Optional[Path], option("--points",
    help="Point cloud file (.bin float32 x5, .npy, .npz 'points', .pcd); a synthetic scan if omitted.")]
LoadDim = Annotated[Optional[int], option(
    "--load-dim", min=3, help="float32 columns per point in a .bin (mmdet3d load_dim; default: the preset's, 5 as "
    "nuScenes/T4; KITTI: 4).")]
DataRoot = Annotated[Optional[Path], option(
    "--data-root", help="Folder the info file's lidar_path (and lidar_sweeps) are relative to (AWML: the T4 data "
    "root); default: the info file's folder.")]
LidarTopic = Annotated[Optional[str], option(
    "--lidar-topic", help="The PointCloud2 topic of a rosbag2 folder (sweep: --scenes BAG; replay: the recording the "
    "node read; default: Autoware's /sensing/lidar/concatenated/pointcloud).")]
UseDim = Annotated[Optional[str], option(
    "--use-dim", help="Columns read as x,y,z[,intensity[,time]]: a count (4 = the first 4) or indices (0,1,2,4); "
    "mmdet3d use_dim.")]

# -- backends and how they run ---------------------------------------------------------------------------------


SPEC_GRAMMAR = ("Spec: framework[-device][-precision][@DIR|@KIT]; framework torch, ort, trt (TensorRT), trt-rtx "
                "(TensorRT for RTX); device cpu, cuda; precision fp32, tf32, fp16, bf16, int8; e.g. torch, "
                "torch-cuda-tf32, ort-cpu-int8, trt-fp16, trt-rtx-fp16. @DIR runs your deployed ONNX files in DIR "
                "(ort-cpu-fp16@deploy/); @KIT reads the results a `cpdebug trt-kit` folder brought back from the "
                "target (trt-fp16@kit/). `cpdebug backends` lists what runs here.")


def backends_option(rule: str, grammar: str = SPEC_GRAMMAR):
    """`--backends/-b`, its help saying the command's rule (`backends.spec.BackendsRule`: how many specs, which may
    come twice) and the spec grammar (`grammar`: a command that takes fewer specs says which)."""
    return option("--backends", "-b", metavar="SPEC,SPEC…", help=f"{rule} {grammar}")


Backends = Annotated[Optional[str], backends_option("REF,CAND[,CAND…]: the first is the reference; no spec twice.")]
Deterministic = Annotated[bool, option("--deterministic/--no-deterministic",
                                       help="TF32 off, cuDNN deterministic, fixed seeds and ORT options.")]
CudnnAlgo = Annotated[Optional[str], option(
    "--cudnn-algo", metavar="heuristic|default|exhaustive", help="How CUDA backends pick cuDNN conv kernels. "
    "heuristic (default with --deterministic): cuDNN's ranking, no timing, the same kernels every run, FP16 convs "
    "NHWC on the tensor cores (ORT prefer_nhwc for FP16 conv graphs, torch channels-last for FP16 and TF32) as a "
    "deployment runs them; default: ORT's DEFAULT (implicit GEMM for every conv, FP16 no faster than FP32), torch "
    "NCHW; exhaustive (default with --no-deterministic): time every kernel at session start, may differ run to run. "
    "Recorded in the report.")]

# -- how a verdict is given (bisect, sweep) ------------------------------------------------------------------------
Atol = Annotated[Optional[float], option("--atol", help="Absolute tolerance (default by candidate precision; "
                                         "--tolerance-mode fixed judges by it).")]
Rtol = Annotated[Optional[float], option("--rtol", help="Relative tolerance (default by candidate precision; "
                                         "--tolerance-mode fixed judges by it).")]
MatchDistance = Annotated[float, option(
    "--match-distance", min=0.01, help="Centre distance (m) that matches a candidate box to a reference box.")]


def level_option(default: str):
    """`--level`, how fine the probes are; `default`: the command's, in words (it depends on the recipe)."""
    return option("--level", help=f"Probe level: stage, block, layer, all (default: {default}).")


ToleranceMode = Annotated[Optional[str], option(
    "--tolerance-mode", show_default="model", help="'model': each candidate against the rounding its precision is "
    "expected to bring (relative RMS error, local faults, boxes at the score threshold): within precision (exit 0), "
    "degraded (4) or diverged (1). 'fixed': the element-wise atol/rtol check, diverged (1) or not (0). Default: "
    "model; fixed when --atol or --rtol is given.")]

# -- INT8 calibration: PTQ here (quantize, sensitivity, fix's INT8 from scratch) ---------------------------------
def calib_option(text: str):
    """`--calib PATH`, what to calibrate on, in every command that calibrates; `text` says what this command reads
    there (a scene set in quantize and sensitivity, .npz samples with --torch/--onnx)."""
    return option("--calib", metavar="PATH", help=text)


def calib_n_option(text: str, shown: str | None = None, **more):
    """`--calib-n N`, how many calibration frames: a count in every command, its default the command's own (`shown`:
    the one its page shows where the default is None, meaning "not given")."""
    return option("--calib-n", metavar="N", show_default=shown or True, help=text, **more)


CalibScenes = Annotated[Optional[Path], calib_option(
    "What to calibrate on: a scene set, an info file (mmdet3d v1.x .pkl) or DIR with infos.pkl (default: synthetic "
    "training scenes).")]
FixCalibN = Annotated[int, calib_n_option(
    "Number of calibration frames (synthetic) of an INT8 candidate made from scratch (no --int8).")]
Method = Annotated[str, option("--method", help="Activation amax: max, percentile, entropy or mse (AWML's default).")]
Percentile = Annotated[float, option("--percentile", help="For --method percentile.")]
# what --calib takes in every command that calibrates .npz samples (bisect, fix, sweep, eval), read by one reader
# (bisect/subjects/feeds.calib_files): the same words on each page, the command's default after them
CALIB_NPZ = ("{what}: .npz files (same keys as --inputs; each array one sample or a batch of samples along its first "
             "axis), repeat for several, or a folder of them ({default}).")


def calib_files_option(what: str, default: str):
    """`--calib PATH`, repeatable, of a command calibrating on .npz samples (`CALIB_NPZ`)."""
    return calib_option(CALIB_NPZ.format(what=what, default=default))


# a sample sweep's / eval's calibrated candidate (--torch / --onnx): what it calibrates on
SampleCalib = Annotated[Optional[list[Path]], calib_files_option(
    "With --torch/--onnx and a calibrated candidate (INT8, FP8, NVFP4): what it calibrates on",
    "default: the samples' first 16")]
# the backends that calibrate themselves (eval, sweep: INT8 specs without --int8)
HeldOutCalib = Annotated[int, calib_n_option(
    "Number of calibration frames: held-out synthetic ones (not evaluated) that calibrate INT8 backends.", min=0)]


def exclude_int8_option(text: str):
    """`--exclude-int8 NAME,NAME…`: what is left out of INT8 (bisect: ONNX nodes of the quantized graph; quantize and
    sensitivity: modules PTQ leaves in FP32); the twin of bisect's --keep-fp32 for FP16."""
    return option("--exclude-int8", metavar="NAME,NAME…", help=text)


SkipLayers = Annotated[Optional[str], exclude_int8_option(
    "Comma-separated layers (module names or prefixes) left out of INT8, in FP32, added to the defaults.")]
ConvT = Annotated[str, option(
    "--convtranspose", metavar="MODE", help="ConvTranspose2d: skip (with the pts_neck.deblocks.N.0 layers, as AWML), "
    "per-channel (axis 1) or per-tensor (AWML's variant: per-tensor weights, pts_backbone.blocks.0 in FP32).")]

# -- what a search may change (fix, keep-fp32) -----------------------------------------------------------------------
def search_nodes_option(text: str):
    """`--search-nodes NAME,NAME…`: the nodes a search may keep in FP32 or leave out of INT8 (`--candidates` before:
    a candidate is a backend judged, extract's --candidate)."""
    return option("--search-nodes", metavar="NAME,NAME…", help=text)


# -- output ----------------------------------------------------------------------------------------------------
# -- gates a CI sets (eval, replay): broken -> exit 1, one line naming the gate and both figures ------------
MinMatch = Annotated[Optional[float], option(
    "--min-match", metavar="R", help="Gate: exit 1 when fewer than this fraction (0..1) of the boxes match the "
    "reference's (matched over the larger box count, so lost and added boxes both count).")]

Json = Annotated[Optional[str], option("--json", help="Write the JSON report to FILE ('-' = stdout, no table).")]
Csv = Annotated[Optional[Path], option("--csv", help="Write the results table as CSV.")]
Parquet = Annotated[Optional[Path], option("--parquet", help="Write the results table as Parquet (needs pyarrow).")]
Html = Annotated[Optional[Path], option("--html", metavar="FILE",
                                        help="Write a self-contained HTML report with plots.")]
Pictures = Annotated[Optional[Path], option(
    "--pictures", metavar="DIR", help="Write the bird's-eye pictures (CenterPoint) as PNG files into DIR: each head "
    "map's change in metres, the peak flips at the score threshold, the root cause's segment.")]
Rrd = Annotated[Optional[Path], option(
    "--rrd", metavar="FILE", help="Write a Rerun recording (.rrd): the scan, both sides' boxes, the BEV maps and the "
    "per-probe errors, one time point per frame (needs rerun-sdk: pip install 'cp-debug[rerun]').")]
Quiet = Annotated[bool, option("--quiet", "-q", help="No progress output.")]
Verbose = Annotated[bool, option("--verbose", "-v", help="Show third-party warnings (ONNX Runtime, torch, …) "
                                       "as they come; by default they are held back (a JSON report keeps them).")]

# -- CI (bisect, sweep, eval, fix --check) -------------------------------------------------------------------------
Junit = Annotated[Optional[Path], option(
    "--junit", metavar="FILE", help="Write JUnit XML for CI (one test case per candidate, frame or check, the "
    "figures in the failure message; and one per budget limit).")]
BudgetFile = Annotated[Optional[Path], option(
    "--budget", metavar="FILE.yaml", help="The limits a team sets (max_map_drop, max_nds_drop, max_ap_drop_per_class, "
    "max_ap_drop_per_range, min_match_rate, max_p95_centre_shift, max_p95_yaw_change, max_head_error, "
    "no_frame_diverged): they decide the exit code, 1 when one is broken (each named with its figure and limit), "
    "0 when all hold. A key this command cannot measure is refused before the run (exit 2). See docs/ci.md.")]

# -- the samples of any one-graph model (--torch / --onnx: sweep, eval) ----------------------------------------------
SampleData = Annotated[Optional[str], option(
    "--data", metavar="FILE.py:FUNC", help="With --torch/--onnx: FUNC() yields dicts of arrays, one sample each "
    "(Polygraphy's load_data; a 'label' / 'labels' key the model does not take is the sample's label); cpdebug "
    "imports and runs FILE.py.")]
MinShapes = Annotated[Optional[str], option(
    "--min-shapes", metavar="NAME:DxD[,…]", help="With --onnx or --torch, instead of samples: search the dynamic axes "
    "(a --torch model's: those the range moves, exported dynamic; with --dynamic or a dynamic(), the axes they "
    "declare must hold them) from these shapes (trtexec's spelling of minShapes, e.g. input_ids:1x64) to "
    "--max-shapes for each candidate's first failing shape (and the last that passes); inputs are made at every "
    "shape (floats seeded normal, token ids below the vocabulary a Gather reads them into).")]
MaxShapes = Annotated[Optional[str], option(
    "--max-shapes", metavar="NAME:DxD[,…]", help="The other end of --min-shapes' range (trtexec's spelling of "
    "maxShapes, e.g. input_ids:1x4096).")]
SampleInputs = Annotated[Optional[Path], option(
    "--inputs", metavar="PATH", help="With --torch/--onnx: one .npz (one sample) or a folder of .npz files (one "
    "sample each); keys = input names or input0, input1, … (a folder is read one sample at a time).")]
