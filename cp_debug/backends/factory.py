"""The runner factory and what can run here: `make_runner` builds (never activates) the runner of a spec;
`check_available` / `availability` say whether a spec can run on this machine, and what to install if not.

Each runner module is imported where its spec asks for it, so importing this one loads no backend library.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

from cp_debug.backends.base import Runner
from cp_debug.backends.spec import BackendSpec
from cp_debug.errors import BackendUnavailableError, BadInputError

_TORCH_OPTS = {"probe_modules", "probe_sites", "capture_inputs", "on_probe", "determinism", "calib_feeds"}
_ONNX_OPTS = {"extra_outputs", "calib_feeds", "keep_fp32_nodes", "exclude_int8_nodes", "determinism", "calib_method"}
_ORT_ONLY = {"threads", "spinning", "int8_model", "shared_arena", "graph_facts", "prepack", "check_model"}
_TRT_ONLY = {"workspace", "profile", "profile_caps", "engine_file", "cache_dir", "cache", "stage"}
_ALL_OPTS = _TORCH_OPTS | _ONNX_OPTS | _ORT_ONLY | _TRT_ONLY


def make_runner(spec: BackendSpec, *, torch_module: Any = None, onnx_model: Any = None,
                input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
                **opts) -> Runner:
    """Build (not activate) the runner for `spec`.

    torch specs need `torch_module`, `input_names` and `output_names`; ort/trt specs need `onnx_model` (a path or
    ModelProto; their names come from the model). Options meant for another framework (e.g. `probe_modules`
    for an ONNX backend) are ignored so one option set can serve every backend of a run; unknown options are a
    TypeError.
    """
    unknown = sorted(set(opts) - _ALL_OPTS)
    if unknown:
        raise TypeError(f"make_runner got unknown option(s): {', '.join(unknown)}")
    if spec.framework == "torch":
        if torch_module is None:
            raise BadInputError(f"{spec} needs the PyTorch model (--recipe or --torch FILE.py:FUNC), "
                                "not only an ONNX file")
        if input_names is None or output_names is None:
            raise BadInputError(f"{spec} needs input and output names for the PyTorch model")
        from cp_debug.backends.pytorch.torch_runner import TorchRunner

        return TorchRunner(torch_module, input_names, output_names, spec,
                           **{k: v for k, v in opts.items() if k in _TORCH_OPTS})
    if onnx_model is None:
        raise BadInputError(f"{spec} needs an ONNX model (--onnx FILE.onnx, or a recipe that exports one)")
    if spec.kit:  # trt-*@KIT: the target's results, read back
        from cp_debug.backends.kit.kit_runner import KitRunner

        return KitRunner(onnx_model, spec, extra_outputs=opts.get("extra_outputs", ()))
    if spec.framework == "ort":
        from cp_debug.backends.ort.ort_runner import OrtRunner

        return OrtRunner(onnx_model, spec, **{k: v for k, v in opts.items() if k in _ONNX_OPTS | _ORT_ONLY})
    from cp_debug.backends.trt.trt_runner import TrtRunner  # trt-* and trt-rtx-*

    return TrtRunner(onnx_model, spec, **{k: v for k, v in opts.items() if k in _ONNX_OPTS | _TRT_ONLY})


def check_available(spec: BackendSpec, *, keep_fp32_nodes: bool = False) -> None:
    """Raise BackendUnavailableError (saying what to install) unless `spec` can run on this machine. On CUDA,
    `CPDEBUG_CUDA_SYNC`'s scheduling is set before any context is made (`cuda_driver.apply_sync`; a bad value
    BadInputError).

    keep_fp32_nodes: the run keeps ONNX nodes in FP32 (Capability.KEEP_FP32_NODES), which trt-bf16 cannot (no
    BF16 ONNX conversion): refused here, before any run."""
    if spec.device == "cuda":
        from cp_debug import cuda_driver

        cuda_driver.apply_sync()
    if spec.framework == "torch":
        _installed("torch", "torch backends need PyTorch: pip install torch")  # found, not imported (item 2, #118)
        if spec.device == "cuda" and not _gpu_for_torch():
            _torch_refuses_cuda()
        if spec.device == "cuda" and "torch" in sys.modules:  # a library caller's torch is in: the driver starts
            from cp_debug import cuda_driver  # on a helper thread (else once torch is imported: device_warm.py)

            cuda_driver.start()
    elif spec.framework == "ort":
        _installed("onnxruntime", "ort backends need ONNX Runtime: pip install onnxruntime")
        if spec.device == "cuda" and not _ort_has_cuda():
            from cp_debug.backends.ort.ort_runner import ORT_CUDA_HINT

            raise BackendUnavailableError(ORT_CUDA_HINT)
    elif spec.kit:  # no TensorRT needed: the kit and its results are checked instead (one line, exit 2)
        from cp_debug.backends.kit.kit_runner import check_kit

        check_kit(spec)
    else:  # trt-* / trt-rtx-*: the library imports and the plan holds; a GPU it cannot run on is told after the build
        from cp_debug.backends.trt.trt_library import load_library
        from cp_debug.backends.trt.trt_plan import plan_build

        plan_build(spec, load_library(spec.framework).version, keep_fp32=keep_fp32_nodes)


def _gpu_for_torch() -> bool:
    """Whether torch-cuda can run here, told without importing torch (issue 118, item 2): the driver sees a GPU
    (NVML: `cuda_driver.visible_gpus`) and the installed torch is a CUDA or ROCm build (its `version.py`, read as
    text). False where either is not certain: `_torch_refuses_cuda` then asks torch itself."""
    from cp_debug import cuda_driver

    if "torch" in sys.modules:  # imported already (a library caller): its own answer costs nothing more
        return sys.modules["torch"].cuda.device_count() > 0
    if not cuda_driver.visible_gpus():
        return False
    build = _module_file("torch", "version.py")
    if build is None:
        return False
    import re

    none = re.findall(r"^(cuda|hip)\b[^=\n]*=\s*None\s*$", build.read_text(errors="replace"), re.M)
    return not {"cuda", "hip"} <= set(none)


def _torch_refuses_cuda() -> None:
    """torch asked whether it has a GPU (the import the fast answer avoided): BackendUnavailableError with why,
    or nothing where it has one after all (a ROCm build, GPUs NVML does not see)."""
    try:
        import torch
    except ImportError as err:
        raise BackendUnavailableError("torch backends need PyTorch: pip install torch") from err
    if torch.cuda.device_count() > 0:  # NVML's count, as torch asks it; a ROCm build counts its GPUs
        return
    from cp_debug.backends.pytorch.torch_runner import TORCH_CUDA_HINT

    cpu_only = torch.version.cuda is None and getattr(torch.version, "hip", None) is None
    why = "torch is a CPU-only build" if cpu_only else "no GPU visible to this process"
    raise BackendUnavailableError(TORCH_CUDA_HINT.format(why=why))


def _ort_has_cuda() -> bool:
    """Whether the installed ONNX Runtime has the CUDA execution provider: its provider library beside the package
    (onnxruntime-gpu's `capi/libonnxruntime_providers_cuda.so`), found without importing it; where it is not there,
    ONNX Runtime itself is asked (another packaging)."""
    if _module_file("onnxruntime", "capi/libonnxruntime_providers_cuda.so"):
        return True
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise BackendUnavailableError("ort backends need ONNX Runtime: pip install onnxruntime") from err
    return "CUDAExecutionProvider" in ort.get_available_providers()


def _module_file(package: str, relative: str) -> Path | None:
    """`relative` inside the installed `package`'s folder, where it is a file there; None else (found without
    importing the package)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(folder) / relative).is_file():
            return Path(folder) / relative
    return None


def _installed(name: str, hint: str) -> None:
    """BackendUnavailableError(hint) unless `import name` can find the module (without importing it: a check before
    the model loads costs no library's import; `sys.modules[name] = None` blocks it, as an install without it)."""
    import importlib.util

    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise BackendUnavailableError(hint)


def all_specs() -> list[BackendSpec]:
    """Every framework/device/precision combination the spec grammar allows."""
    from cp_debug.backends.spec import _SUPPORT  # the one table of what each framework supports

    specs = []
    for framework, (devices, precisions) in _SUPPORT.items():
        for device in devices:
            for precision in precisions:
                if precision == "tf32" and device != "cuda":
                    continue
                specs.append(BackendSpec(framework, device, precision))
    return specs


def availability() -> list[tuple[str, bool, str]]:
    """(spec, available, reason) for every spec: the reason says what is missing, or what will run it."""
    from cp_debug.determinism import environment

    env = environment()
    rows = []
    for spec in all_specs():
        try:
            check_available(spec)
        except BackendUnavailableError as err:
            rows.append((str(spec), False, str(err)))
        else:
            rows.append((str(spec), True, _runs_on(spec, env)))
    rows.append(("trt-*@KIT", True, "reads the results a kit brought back from the target (`cpdebug trt-kit --out "
                 "KIT`, then its run_trtexec.sh / run_polygraphy.sh there): no TensorRT needed here"))
    return rows


def _runs_on(spec: BackendSpec, env: dict) -> str:
    if spec.framework == "torch":
        where = env.get("gpu") if spec.device == "cuda" else "CPU"
        extra = {"int8": " (fake quantization of a PTQ model: bisect/eval --int8 DIR)",
                 "fp8": " (E4M3 fake quantization of every Linear / Conv, emulated in float32; on a GPU of compute "
                        "capability 8.9+ nn.Linear runs as FP8 GEMMs through torch._scaled_mm)"}.get(spec.precision, "")
        return f"torch {env.get('torch')} on {where}{extra}"
    if spec.framework == "ort":
        ep = "CUDAExecutionProvider" if spec.device == "cuda" else "CPUExecutionProvider"
        extra = ""
        if spec.device == "cpu" and spec.precision == "fp16":
            from cp_debug.backends.ort.ort_runner import half_mode

            extra = (" (float16 storage emulated: every float16 tensor rounded after its node, float32 arithmetic, "
                     "as a GPU computes)" if half_mode() == "emulated" else
                     " (ONNX Runtime's own CPU float16: most of an FP16 graph runs in float32 there)")
        if spec.precision == "fp8":
            extra = (" (FP8 E4M3 Q/DQ as ModelOpt writes it, float32 arithmetic on E4M3 values; graph optimisations "
                     "off: ORT's default level computes float8 Q/DQ wrong)")
        if spec.emulated:
            from cp_debug.precision.block_formats import FORMATS
            from cp_debug.precision.block_quant import EMULATED

            extra = f" ({FORMATS[spec.precision].describe}, {EMULATED}: float32 ONNX ops round as the format does)"
        return f"onnxruntime {env.get('onnxruntime')} {ep}{extra}"
    if spec.framework == "trt-rtx":
        return _rtx_runs_on(env)
    return f"TensorRT {env.get('tensorrt')}"


def runs_here(spec: BackendSpec, env: dict | None = None) -> bool:
    """Can an available `spec` run its engines here, beyond building them? False only for TensorRT-RTX without a GPU
    it supports (it builds without one: the run stops after the build, exit 3)."""
    if spec.framework != "trt-rtx":
        return True
    from cp_debug.determinism import environment

    env = environment() if env is None else env
    cc = env.get("gpu_capability")
    return bool(env.get("gpu")) and (cc is None or _rtx_supports(cc))


def _rtx_runs_on(env: dict) -> str:
    """TensorRT-RTX: it builds here whatever the machine; whether its engines run depends on the GPU."""
    from cp_debug.backends.trt.trt_library import RTX_RUNS_ON, load_library

    lib = load_library("trt-rtx")
    gpu, cc = env.get("gpu"), env.get("gpu_capability")
    if not gpu:
        here = "no GPU here: engines are built and checked, not run"
    elif cc and not _rtx_supports(cc):
        here = f"{gpu} (compute capability {cc}) is not among them: engines are built and checked, not run"
    else:
        here = f"runs on {gpu}" + (f" (compute capability {cc})" if cc else "")
    return f"{lib.name} {lib.version_text}: builds here; its engines run on {RTX_RUNS_ON}; {here}"


def _rtx_supports(cc: str) -> bool:
    major, _, minor = str(cc).partition(".")
    return (major, minor) in (("8", "0"), ("8", "6"), ("8", "9")) or major == "12"



def tensorrt_paths() -> list[tuple[str, bool, str]]:
    """(path, available, why) for each way a TensorRT result can enter a run: an engine built here from the ONNX
    (TensorRT, TensorRT for RTX), the user's prebuilt engines, and results read back from a kit run on the target
    (no TensorRT needed)."""
    import importlib.util

    from cp_debug.determinism import environment

    from cp_debug.backends.trt.trt_library import load_library

    try:
        trt = load_library("trt")
    except BackendUnavailableError as err:
        here, why = False, str(err)
    else:
        here, why = True, f"TensorRT {trt.version_text} (a visible NVIDIA GPU is needed to run it)"
    try:
        rtx, rtx_why = True, _rtx_runs_on(environment())
    except BackendUnavailableError as err:
        rtx, rtx_why = False, str(err)
    kit = importlib.util.find_spec("cp_debug.backends.kit.kit_runner") is not None
    return [
        ("trt-* (engine built here from the ONNX: tensorrt + a GPU)", here, why),
        ("trt-rtx-* (engine built here by TensorRT for RTX, no GPU needed; run on an RTX GPU)", rtx, rtx_why),
        ("trt-*@DIR with DIR/<stage>.engine|.plan (your prebuilt engines: the TensorRT runtime + a GPU)", here, why),
        ("trt-*@KIT (results a kit brought back from the target: no TensorRT needed)", kit,
         "reads trtexec / polygraphy outputs of `cpdebug trt-kit`" if kit
         else "this cp_debug has no kit reader (backends/kit/kit_runner.py)"),
    ]
