"""ONNX Runtime's CUDA provider warmed up on a helper thread while a bisect's model loads (`backends/ort/ort_warm.py`):
only for an ONNX Runtime CUDA backend, with the options its runner would give, never raising."""

from __future__ import annotations

import pytest

from cp_debug.backends.ort.ort_warm import warm_up, warm_up_in_background
from cp_debug.backends.spec import BackendSpec
from cp_debug.determinism import Determinism


def _specs(*labels: str) -> list[BackendSpec]:
    return [BackendSpec.parse(label) for label in labels]


def test_no_warm_up_without_an_onnx_runtime_cuda_backend():
    assert warm_up_in_background(_specs("torch-cuda", "torch-cuda-fp16")) is None
    assert warm_up_in_background(_specs("torch", "ort-cpu-fp16")) is None


def test_the_warm_up_thread_ends_quietly_where_cuda_is_missing():
    import onnxruntime as ort

    th = warm_up_in_background(_specs("torch-cuda", "ort-cuda-fp16"))
    assert th is not None and th.name == "cpdebug-ort-warm-up"
    th.join()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        warm_up(Determinism().ort_cuda_provider_options(tf32=False, half=True), True)  # returns: nothing to warm


@pytest.mark.gpu
@pytest.mark.needs("cuda", "onnxruntime-gpu")
def test_the_warm_up_runs_a_float16_conv_on_the_cuda_provider():
    for half in (True, False):
        warm_up(Determinism().ort_cuda_provider_options(tf32=False, half=half), half)
