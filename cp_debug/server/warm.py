"""Warming a server up: what every command loads (cp_debug's modules, the comparison kernels, ONNX Runtime; on a
GPU CUDA's context, ONNX Runtime's CUDA provider and the first Triton kernel), loaded once before it serves."""

from __future__ import annotations

import os
import time
from typing import Callable

from cp_debug.server import hold


def warm_up(say: Callable[[str], None]) -> None:
    """Load what every command loads: cp_debug's modules (torch, numba and scipy with them), the comparison
    kernels, ONNX Runtime, onnx, onnx-graphsurgeon, pandas, matplotlib; on a GPU, CUDA's context, ONNX Runtime's
    CUDA provider and the first Triton comparison kernel. What fails here is only logged: the command that needs it
    will say so itself."""
    import importlib
    import pkgutil

    import cp_debug

    t0 = time.perf_counter()
    for mod in pkgutil.walk_packages(cp_debug.__path__, "cp_debug."):
        try:
            importlib.import_module(mod.name)
        except Exception as err:  # noqa: BLE001 - an optional extra missing: its command says so when asked
            say(f"warm-up: {mod.name} not loaded ({type(err).__name__}: {err})")
    hold.at("imports", os.getpid())
    for name in ("onnxruntime", "onnx", "onnx_graphsurgeon", "pandas", "matplotlib.colors", "rich.table",
                 "rich.live", "rich.progress"):
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001
            say(f"warm-up: {name} not loaded ({type(err).__name__}: {err})")
    try:
        from cp_debug.compare import kernels

        kernels.warm_up()
    except Exception as err:  # noqa: BLE001
        say(f"warm-up: the comparison kernels not loaded ({type(err).__name__}: {err})")
    say(f"warm-up: modules and kernels loaded in {time.perf_counter() - t0:.2f} s")
    try:
        import torch

        if torch.cuda.is_available():
            t0 = time.perf_counter()
            torch.cuda.init()
            torch.zeros(1, device="cuda")
            _ort_cuda_provider()
            from cp_debug.compare.fused_diff import warm_up as triton_warm_up

            triton_warm_up()
            say(f"warm-up: CUDA, ONNX Runtime's CUDA provider and Triton in {time.perf_counter() - t0:.2f} s")
    except Exception as err:  # noqa: BLE001
        say(f"warm-up: the GPU part failed ({type(err).__name__}: {err})")


def _ort_cuda_provider() -> None:
    """Load ONNX Runtime's CUDA provider library (and cuDNN, cuBLAS with it) by running a one-node graph on it."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "warm", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CUDAExecutionProvider"])
    sess.run(None, {"x": np.ones(1, np.float32)})
