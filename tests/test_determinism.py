"""cp_debug.determinism: the torch context restores the state it found; the settings and environment it records."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cp_debug.determinism import Determinism, environment
from cp_debug.errors import BadInputError


def test_determinism_context_restores_state():
    import random

    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled(),
             torch.utils.deterministic.fill_uninitialized_memory)
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    expect = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    with Determinism(seed=7).apply_torch("cpu", allow_tf32=True):
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.utils.deterministic.fill_uninitialized_memory  # outputs written once (determinism.py)
        inside = torch.rand(1).item()
    with Determinism(seed=7).apply_torch("cpu"):
        assert inside == torch.rand(1).item()  # seeded
        assert not torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled(),
            torch.utils.deterministic.fill_uninitialized_memory) == flags
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expect  # caller's streams undisturbed


def test_determinism_records():
    d = Determinism()
    s = d.settings()
    assert s["determinism"] is True and s["onnxruntime"]["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert d.ort_cuda_provider_options(tf32=False) == {"device_id": "0", "use_tf32": "0",
                                                       "cudnn_conv_algo_search": "HEURISTIC"}
    assert Determinism(enabled=False).ort_cuda_provider_options(tf32=True)["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    assert d.ort_cuda_provider_options(tf32=True)["use_tf32"] == "1"
    assert s["cudnn_algo"] == "heuristic" and s["onnxruntime"]["cuda.cudnn_conv_algo_search"] == "HEURISTIC"
    with pytest.raises(BadInputError, match="--cudnn-algo"):
        Determinism(conv_algo="fastest")


def test_conv_algo_choices_set_the_kernel_path():
    """heuristic: FP16 convs NHWC (ORT prefer_nhwc where this ONNX Runtime reads it, torch channels-last on CUDA);
    default: the old fixed implicit GEMM, NCHW; exhaustive: timed search (torch cudnn.benchmark) even when
    deterministic."""
    import onnxruntime as ort

    nhwc = tuple(int(p) for p in ort.__version__.split(".")[:2]) >= (1, 20)
    heur = Determinism()
    assert heur.ort_cuda_provider_options(tf32=False, half=True).get("prefer_nhwc") == ("1" if nhwc else None)
    assert "prefer_nhwc" not in heur.ort_cuda_provider_options(tf32=False, half=False)
    assert heur.channels_last("cuda", "fp16") and heur.channels_last("cuda", "tf32")
    assert not heur.channels_last("cuda", "fp32")
    assert not heur.channels_last("cpu", "fp16")
    default = Determinism(conv_algo="default")
    assert default.ort_cuda_provider_options(tf32=False, half=True) == {"device_id": "0", "use_tf32": "0",
                                                                        "cudnn_conv_algo_search": "DEFAULT"}
    assert not default.channels_last("cuda", "fp16")
    assert default.settings()["torch"]["memory_format"] == "contiguous (NCHW)"
    exhaustive = Determinism(conv_algo="exhaustive")
    assert exhaustive.ort_cuda_provider_options(tf32=False)["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    with exhaustive.apply_torch("cpu"):
        assert torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    with heur.apply_torch("cpu"):
        assert not torch.backends.cudnn.benchmark
    so = Determinism(ort_opt_level="basic").ort_session_options(threads=2)
    assert so.intra_op_num_threads == 2 and "BASIC" in str(so.graph_optimization_level)
    with pytest.raises(BadInputError):
        Determinism(ort_opt_level="max")
    env = environment()
    for key in ("python", "numpy", "torch", "onnx", "onnxruntime", "onnxruntime_providers", "polygraphy",
                "onnx_graphsurgeon", "tensorrt", "modelopt", "gpu"):
        assert key in env
    assert env["onnxruntime"] and "CPUExecutionProvider" in env["onnxruntime_providers"]


def test_deterministic_torch_does_not_load_the_compiler_stack():
    """torch.use_deterministic_algorithms imports torch._inductor (dynamo, sympy: seconds per process); the switch
    sets the same flag without it."""
    import subprocess
    import sys

    code = ("import sys, torch\nfrom cp_debug.determinism import Determinism\n"
            "with Determinism().apply_torch('cpu'):\n    assert torch.are_deterministic_algorithms_enabled()\n"
            "assert not torch.are_deterministic_algorithms_enabled()\n"
            "print(sorted(m for m in ('torch._dynamo', 'torch._inductor', 'sympy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_peak_memory_says_the_host_rss_and_the_summary_line_reads_it():
    """The report's `settings.peak_memory` (issue 83): the process's peak RSS (getrusage); the GPU figures only
    where torch has started CUDA (never on the CPU machine)."""
    import resource

    from cp_debug.determinism import peak_memory
    from cp_debug.report.table import memory_line

    peak = peak_memory()
    assert peak["host_rss_bytes"] >= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 > 0
    assert memory_line(peak).startswith(f"peak host RSS {peak['host_rss_bytes'] / 1e9:.3g} GB")
    line = memory_line({"host_rss_bytes": 12.7e9, "gpu_torch_peak_bytes": 9.72e9, "gpu_in_use_bytes": 11.1e9})
    assert line == "peak host RSS 12.7 GB · GPU 11.1 GB in use at most (torch's peak 9.72 GB)"
    assert memory_line(None) is None
