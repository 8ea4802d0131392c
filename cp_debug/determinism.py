"""Determinism first: one switch for TF32, cuDNN, seeds and ORT session settings, plus the environment manifest.

Numbers only mean something when the reference itself is repeatable: TF32 silently changes FP32 results on
Ampere+ GPUs (ORT's CUDA EP and cuDNN default to it), cuDNN autotuning picks different kernels from run to run,
and seeds move sampled inputs. `Determinism` pins all of that, restores what it changed, and records every
setting (`settings()`) and library version (`environment()`) for the report.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import random
import sys
from dataclasses import dataclass
from typing import Iterator

_ORT_OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
_CUBLAS_WORKSPACE = ":4096:8"  # what cuBLAS needs for deterministic GEMMs (see torch.use_deterministic_algorithms)
# How cuDNN's convolution algorithm is chosen (`--cudnn-algo`), the kernel path of every CUDA backend:
#   heuristic:  cuDNN's own ranking of the algorithms for the shape, no timing (ORT `HEURISTIC`; torch
#               `cudnn.benchmark=False`): fixed for a machine, uses the tensor cores; FP16 convs in NHWC
#               (ORT `prefer_nhwc=1`, torch channels-last), as an FP16 deployment runs them; torch TF32 convs
#               channels-last too (on the H100 awml-base's backbone: 11.9 ms against 20.6 NCHW, bit-identical
#               across runs). FP32 stays NCHW (channels-last was slower: 50.6 against 48.6 ms).
#               The deterministic default.
#   default:    ORT's `DEFAULT`, cuDNN's implicit-precomp GEMM for every conv (no search at all; on the H100 FP16
#               ran no faster than FP32); torch as heuristic but NCHW. What cp_debug set before issue 32.
#   exhaustive: time every algorithm at session start and keep the fastest (ORT `EXHAUSTIVE`, torch
#               `cudnn.benchmark=True`): may pick another kernel on the next run. The non-deterministic default.
CONV_ALGOS = ("heuristic", "default", "exhaustive")
_NHWC_ORT = (1, 20)  # the first ONNX Runtime whose CUDA EP reads `prefer_nhwc`


@dataclass(frozen=True)
class Determinism:
    """Settings that make a backend repeatable.

    enabled: cuDNN deterministic + benchmark off, torch deterministic algorithms (warn only), ORT deterministic
        compute and a fixed cuDNN conv algorithm (no exhaustive autotuning), seeds fixed.
        TF32 is governed by the backend's precision (on only for `*-tf32` specs), whatever `enabled` says.
    seed: seeds python `random`, numpy's global RNG and torch (CPU and CUDA) inside `apply_torch`.
    ort_opt_level: ORT graph optimisation level: disable | basic | extended | all (ORT's default is all).
    ort_disabled_optimizers: ORT graph optimisers (transformers or rewrite rules, by ORT's own names) left out of
        the session (InferenceSession's `disabled_optimizers`): the INT8 why's cure of ClipQuantFusion's wrong drop
        runs the segment with its rule, "ClipQuantRewrite", off (`bisect/findings/clip_fusion.py`).
    conv_algo: how cuDNN picks convolution kernels on CUDA (`CONV_ALGOS`); None: heuristic when enabled,
        exhaustive otherwise.
    """

    enabled: bool = True
    seed: int = 0
    ort_opt_level: str = "all"
    conv_algo: str | None = None
    ort_disabled_optimizers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.ort_opt_level not in _ORT_OPT_LEVELS:
            from cp_debug.errors import BadInputError

            raise BadInputError(
                f"unknown ORT graph optimisation level {self.ort_opt_level!r}: use one of {', '.join(_ORT_OPT_LEVELS)}"
            )
        check_conv_algo(self.conv_algo)

    @property
    def cudnn_algo(self) -> str:
        """The convolution algorithm choice in force: `conv_algo`, else heuristic (deterministic) or exhaustive."""
        return self.conv_algo or ("heuristic" if self.enabled else "exhaustive")

    def channels_last(self, device: str, precision: str) -> bool:
        """Does torch run this backend's modules channels-last (NHWC)? CUDA FP16 and TF32 under the heuristic conv
        choice (the tensor cores' layout)."""
        return str(device).startswith("cuda") and precision in ("fp16", "tf32") and self.cudnn_algo == "heuristic"

    # -- torch ---------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def apply_torch(self, device: str = "cpu", allow_tf32: bool = False) -> Iterator[None]:
        """Set torch's TF32/cuDNN/determinism flags and seeds for the duration of the block, then restore them.

        RNG states (python, numpy, torch CPU and CUDA) are restored too, so seeding here does not disturb the
        caller's random streams.
        """
        import numpy as np
        import torch

        cuda = str(device).startswith("cuda") and torch.cuda.is_available()
        saved = {
            "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_tf32": torch.backends.cudnn.allow_tf32,
            "cudnn_det": torch.backends.cudnn.deterministic,
            "cudnn_bench": torch.backends.cudnn.benchmark,
            "det_algos": torch.are_deterministic_algorithms_enabled(),
            "det_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "det_fill": _fill_uninitialized(torch),
            "py_rng": random.getstate(),
            "np_rng": np.random.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if cuda else None,
            "cublas_ws": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        }
        try:
            torch.backends.cuda.matmul.allow_tf32 = bool(allow_tf32)
            torch.backends.cudnn.allow_tf32 = bool(allow_tf32)
            if self.enabled:
                torch.backends.cudnn.deterministic = True
                torch.backends.cudnn.benchmark = self.cudnn_algo == "exhaustive"
                _deterministic_algorithms(torch, True, warn_only=True)
                _fill_uninitialized(torch, False)  # see _fill_uninitialized
                if cuda and saved["cublas_ws"] is None:
                    # Only effective before cuBLAS creates its first handle; recorded in settings() either way.
                    os.environ["CUBLAS_WORKSPACE_CONFIG"] = _CUBLAS_WORKSPACE
                seed_all(self.seed, cuda=cuda)
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = saved["matmul_tf32"]
            torch.backends.cudnn.allow_tf32 = saved["cudnn_tf32"]
            torch.backends.cudnn.deterministic = saved["cudnn_det"]
            torch.backends.cudnn.benchmark = saved["cudnn_bench"]
            _deterministic_algorithms(torch, saved["det_algos"], warn_only=saved["det_warn_only"])
            _fill_uninitialized(torch, saved["det_fill"])
            random.setstate(saved["py_rng"])
            np.random.set_state(saved["np_rng"])
            torch.set_rng_state(saved["torch_rng"])
            if saved["cuda_rng"] is not None:
                torch.cuda.set_rng_state_all(saved["cuda_rng"])
            if saved["cublas_ws"] is None:
                os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)

    # -- ONNX Runtime --------------------------------------------------------------------------------------
    def ort_session_options(self, *, threads: int | None = None, optimized_model_filepath: str | None = None,
                            record_assignment: bool = False, spinning: bool = True):
        """An `onnxruntime.SessionOptions` with the graph optimisation level, thread count and determinism set."""
        import onnxruntime as ort

        from cp_debug.ort_sessions import session_options

        so = session_options(level=_ORT_OPT_LEVELS[self.ort_opt_level])
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if self.enabled and hasattr(so, "use_deterministic_compute"):
            so.use_deterministic_compute = True
        if threads is not None:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        if optimized_model_filepath:
            so.optimized_model_filepath = str(optimized_model_filepath)
        if record_assignment:
            so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
        if not spinning:  # idle ORT threads would busy-wait and slow the numpy work done between runs
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3  # errors only: ORT's warnings (e.g. node placement) are read from the session
        return so

    def numbers_key(self, threads: int | None = None, int8: bool = False) -> tuple:
        """What of the ONNX Runtime session options `ort_session_options(threads=…)` makes (with INT8's exact integer
        products where `int8`) can change a CPU session's numbers: two sessions of one file with equal keys compute
        the same (`ort_sessions.hold` / `take`). Spinning, arenas and the optimised graph's dump are left out."""
        return (self.enabled, self.ort_opt_level, tuple(self.ort_disabled_optimizers), threads, bool(int8))

    def ort_session_kwargs(self) -> dict:
        """InferenceSession's keyword arguments beyond its options: the optimisers left out, where any are."""
        return {"disabled_optimizers": list(self.ort_disabled_optimizers)} if self.ort_disabled_optimizers else {}

    def ort_cuda_provider_options(self, tf32: bool, device_id: int = 0, half: bool = False) -> dict[str, str]:
        """CUDA EP options: TF32 only when asked (ORT turns it on by default), the conv algorithm choice (`cudnn_algo`:
        HEURISTIC, DEFAULT or EXHAUSTIVE) and, for a float16 graph of convolutions (`half`: the backbone/neck/head)
        under the heuristic choice, `prefer_nhwc=1` (NHWC convs on the tensor cores; ONNX Runtime >= 1.20). Not for a
        graph without convs, nor for one with a BatchNormalization that does not read a conv's 4-D output (the caller
        says so with `half`: `backends.ort.ort_graphs.nhwc_safe`): on the H100 (onnxruntime-gpu 1.31.1, 2026-11-25,
        `benchmarks/ort_cuda_nhwc_abort.py`) a float16 BatchNormalization on a [N, C, P] input (the pillar encoder's
        BatchNorm1d) under prefer_nhwc aborts the process (`terminate called without an active exception`), with or
        without convs beside it; float32, or float16 without prefer_nhwc, runs. So CenterPoint's pillar encoder and
        TransFusion-L's first stage (the encoder and the backbone in one graph) stay NCHW; CenterPoint's backbone (its
        neck's ConvTranspose → BN) runs NHWC.

        Measured on the H100 (awml-base backbone/neck/head, issue 32): DEFAULT FP32 55.9 / FP16 56.4 ms, EXHAUSTIVE 38.4
        / 52.8, HEURISTIC 40.3 / 10.1, HEURISTIC + prefer_nhwc FP16 7.3 ms."""
        opts = {
            "device_id": str(device_id),
            "use_tf32": "1" if tf32 else "0",
            "cudnn_conv_algo_search": self.cudnn_algo.upper(),
        }
        if half and self.cudnn_algo == "heuristic" and _ort_reads_nhwc():
            opts["prefer_nhwc"] = "1"
        return opts

    # -- the record ----------------------------------------------------------------------------------------
    def settings(self) -> dict:
        """Every setting this switch controls, for the report's `settings`."""
        return {
            "determinism": self.enabled,
            "seed": self.seed,
            "cudnn_algo": self.cudnn_algo,
            "torch": {
                "cudnn.deterministic": True if self.enabled else "unchanged",
                "cudnn.benchmark": (self.cudnn_algo == "exhaustive") if self.enabled else "unchanged",
                "memory_format": ("channels_last for torch-cuda-fp16 and torch-cuda-tf32"
                                  if self.cudnn_algo == "heuristic" else "contiguous (NCHW)"),
                "use_deterministic_algorithms": "warn_only" if self.enabled else "unchanged",
                "fill_uninitialized_memory": False if self.enabled else "unchanged",
                "allow_tf32": "on for *-tf32 specs only (cuda.matmul and cudnn)",
                "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG")
                or (_CUBLAS_WORKSPACE + " (set on CUDA)" if self.enabled else None),
            },
            "onnxruntime": {
                "graph_optimization_level": _ORT_OPT_LEVELS[self.ort_opt_level],
                **({"disabled_optimizers": list(self.ort_disabled_optimizers)} if self.ort_disabled_optimizers else {}),
                "execution_mode": "ORT_SEQUENTIAL",
                "use_deterministic_compute": self.enabled,
                "cuda.use_tf32": "1 for *-tf32 specs only, else 0",
                "cuda.cudnn_conv_algo_search": self.cudnn_algo.upper(),
                "cuda.prefer_nhwc": ("1 for *-fp16 specs" if _ort_reads_nhwc() else "not read by this onnxruntime")
                if self.cudnn_algo == "heuristic" else "0",
            },
            "tensorrt": {"tf32": "on for trt-tf32 only"},
        }


def seed_all(seed: int, cuda: bool = True) -> None:
    """Python's `random`, numpy's global RNG and torch's CPU generator (with `cuda`, every CUDA device's) from
    `seed`: what `Determinism.apply_torch` does for each run, and what a user's `--torch` / `--model-factory` file
    gets before any of it runs, so a build() that draws random weights or inputs builds the same model each run."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    # Not torch.manual_seed, which also queues seeds for accelerators never initialised (xpu, mtia), formatting the
    # call stack each time (torch 2.11 on the H100 host: 0.116 ms a call against 0.005 ms). CUDA's is queued until
    # CUDA starts where it has not yet.
    torch.random.default_generator.manual_seed(seed)
    if cuda:
        torch.cuda.manual_seed_all(seed)


def _deterministic_algorithms(torch, mode: bool, warn_only: bool) -> None:
    """`torch.use_deterministic_algorithms` without its `import torch._inductor.config`, which loads dynamo, sympy
    and the rest of the compiler stack (~10 s of a warm awml-base bisect on the H100 machine, 3 s on the CPU one)
    for a flag cp_debug never reads: the ATen flag is set, and inductor's copy only when inductor is loaded."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:  # a torch without the private setter: the public call, imports and all
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
        return
    setter(mode, warn_only=warn_only)
    inductor = sys.modules.get("torch._inductor.config")
    if inductor is not None:
        inductor.deterministic = mode


def _fill_uninitialized(torch, value: bool | None = None) -> bool | None:
    """torch's `utils.deterministic.fill_uninitialized_memory` (None where this torch has no such flag); set to
    `value` where given.

    Under deterministic algorithms torch fills every tensor it allocates with NaN before the op writes it — a
    convolution's or a BatchNorm's whole output written twice. cp_debug runs it off: torch says a program whose ops
    never read memory they did not write stays deterministic without it, and the reference's noise run (its second
    run, compared with the first) is what shows a model that does. Measured: on an H200 awml-base's FP32 reference
    filled 1.3-1.4 ms of its 47 ms of kernels a frame in the sweep's loop (`FillFunctor`, one per allocation; the
    head maps bit-identical without it); on the 2-core CPU machine the demo preset's torch pipeline ~5 % of its
    frame (docs/measurements.md, 2026-11-28 late night)."""
    get = getattr(torch._C, "_get_deterministic_fill_uninitialized_memory", None)
    put = getattr(torch._C, "_set_deterministic_fill_uninitialized_memory", None)
    if get is None or put is None:
        return None
    was = bool(get())
    if value is not None:
        put(bool(value))
    return was


def check_conv_algo(value: str | None) -> str | None:
    """`value` if it names a conv algorithm choice (`CONV_ALGOS`) or is None; else one BadInputError line."""
    if value is not None and value not in CONV_ALGOS:
        from cp_debug.errors import BadInputError

        raise BadInputError(f"--cudnn-algo {value!r}: use one of {', '.join(CONV_ALGOS)}")
    return value


@functools.lru_cache(maxsize=1)
def _ort_reads_nhwc() -> bool:
    """Does the installed ONNX Runtime's CUDA EP read `prefer_nhwc`? (its metadata's version; nothing imported)"""
    version = _dist_version("onnxruntime-gpu") or _dist_version("onnxruntime")
    if version is None:
        return False
    try:
        return tuple(int(p) for p in version.split(".")[:2]) >= _NHWC_ORT
    except ValueError:
        return False


_RTX_DISTS = ("tensorrt-rtx-cu13-bindings", "tensorrt-rtx-cu12-bindings", "tensorrt-rtx", "tensorrt_rtx")


def peak_memory() -> dict:
    """What the run held at most: the process's peak resident host memory (getrusage), and where torch used CUDA the
    peak of torch's allocator and the most device memory seen in use (`note_gpu_in_use`: each runner's at its end,
    ONNX Runtime's arena at its largest then; other processes included): {"host_rss_bytes",
    "gpu_torch_peak_bytes", "gpu_in_use_bytes"}."""
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out: dict = {"host_rss_bytes": int(rss if sys.platform == "darwin" else rss * 1024),
                 "gpu_torch_peak_bytes": None, "gpu_in_use_bytes": None}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        try:
            out["gpu_torch_peak_bytes"] = int(torch.cuda.max_memory_allocated())
            note_gpu_in_use()
            out["gpu_in_use_bytes"] = _GPU_SEEN
        except RuntimeError:  # a device lost mid-run: the host figure stands alone
            pass
    return out


def note_gpu_in_use() -> None:
    """Remember the device memory in use now where torch has started CUDA (a runner calls it as it ends, while its
    session and arena still hold what they took); nothing otherwise."""
    global _GPU_SEEN
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return
    try:
        free, total = torch.cuda.mem_get_info()
    except RuntimeError:
        return
    _GPU_SEEN = max(_GPU_SEEN or 0, int(total - free))


_GPU_SEEN: int | None = None


def environment(load_torch: bool = True) -> dict:
    """Library and device versions for the report. Never fails: what is missing is reported as None.

    load_torch=False (a run that touched neither torch nor a GPU): torch is not imported just to be described —
    its import costs ~2 s and ~0.6 GB of resident memory —, loaded already or not (a server holds it: its report is
    its own process's); its version comes from the installed package's metadata and the device fields are None."""
    env: dict = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    env["numpy"] = _version("numpy")
    if not load_torch:
        env["torch"] = _dist_version("torch")
        env.update(torch_cuda=None, cudnn=None, cuda_available=None, gpu=None)
    else:
        _torch_environment(env)
    env["onnx"] = _version("onnx")
    try:
        import onnxruntime as ort

        env["onnxruntime"] = ort.__version__
        env["onnxruntime_providers"] = list(ort.get_available_providers())
    except Exception:  # noqa: BLE001
        env["onnxruntime"] = None
        env["onnxruntime_providers"] = []
    env["polygraphy"] = _version("polygraphy")
    env["onnx_graphsurgeon"] = _version("onnx_graphsurgeon")
    env["tensorrt"] = _version("tensorrt")
    # TensorRT for RTX, from its wheels' metadata (importing it loads its 230 MB library)
    env["tensorrt_rtx"] = next((v for v in map(_dist_version, _RTX_DISTS) if v), None)
    env["modelopt"] = _version("modelopt") if load_torch else _dist_version("nvidia-modelopt")  # imports torch
    env["cpu_int8_path"] = cpu_int8_path()
    return env


# ONNX Runtime's integer GEMM (MLAS) picks its x86 kernel by instruction set, best first: AMX tiles, AVX-512 VNNI,
# AVX-VNNI, AVX-512BW, AVX2. The integer sums are exact on each (AVX2's 16-bit saturating U8S8 product is avoided by
# `session.x64quantprecision`); what differs is which float arithmetic surrounds them where a graph runs a Q/DQ
# group unfused.
_INT8_PATHS = (("amx_int8", "amx-int8"), ("avx512_vnni", "avx512-vnni"), ("avx_vnni", "avx-vnni"),
               ("avx512bw", "avx512bw"), ("avx2", "avx2"))


@functools.lru_cache(maxsize=1)
def cpu_int8_path() -> str:
    """The x86 instruction set ONNX Runtime's CPU INT8 kernels run on here (`avx2`, `avx512-vnni`, `amx-int8`, …),
    from the CPU flags Linux reports; the machine's architecture elsewhere."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return machine or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return "x86_64 (flags unread)"
    return next((name for flag, name in _INT8_PATHS if flag in flags), "sse4")


def _torch_environment(env: dict) -> None:
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_cuda"] = torch.version.cuda
        env["cudnn"] = _safe(lambda: torch.backends.cudnn.version())
        cuda_ok = _safe(torch.cuda.is_available) or False
        env["cuda_available"] = cuda_ok
        if cuda_ok:
            env["gpu"] = _safe(lambda: torch.cuda.get_device_name(0))
            env["gpu_capability"] = _safe(lambda: ".".join(map(str, torch.cuda.get_device_capability(0))))
        else:
            env["gpu"] = None
    except Exception:  # noqa: BLE001 - a broken install is still something to report, not a crash
        env["torch"] = None


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except Exception:  # noqa: BLE001 - ImportError, or a package that fails on import (no GPU driver…)
        return None
    return str(getattr(mod, "__version__", "unknown"))


def _dist_version(dist: str) -> str | None:
    """An installed distribution's version from its metadata, without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _safe(fn):
    try:
        return fn()
    except Exception:  # noqa: BLE001
        return None
