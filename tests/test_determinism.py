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
             torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled())
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
        inside = torch.rand(1).item()
    with Determinism(seed=7).apply_torch("cpu"):
        assert inside == torch.rand(1).item()  # seeded
        assert not torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled()) == flags
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expect  # caller's streams undisturbed


def test_determinism_records():
    d = Determinism()
    s = d.settings()
    assert s["determinism"] is True and s["onnxruntime"]["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert d.ort_cuda_provider_options(tf32=False) == {"device_id": "0", "use_tf32": "0",
                                                       "cudnn_conv_algo_search": "DEFAULT"}
    assert Determinism(enabled=False).ort_cuda_provider_options(tf32=True)["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    assert d.ort_cuda_provider_options(tf32=True)["use_tf32"] == "1"
    so = Determinism(ort_opt_level="basic").ort_session_options(threads=2)
    assert so.intra_op_num_threads == 2 and "BASIC" in str(so.graph_optimization_level)
    with pytest.raises(BadInputError):
        Determinism(ort_opt_level="max")
    env = environment()
    for key in ("python", "numpy", "torch", "onnx", "onnxruntime", "onnxruntime_providers", "polygraphy",
                "onnx_graphsurgeon", "tensorrt", "modelopt", "gpu"):
        assert key in env
    assert env["onnxruntime"] and "CPUExecutionProvider" in env["onnxruntime_providers"]
