"""The CUDA driver started on a helper thread (`cp_debug/cuda_driver.py`): `check_available` asks NVML for the count
of a torch CUDA backend and starts the driver beside the main thread; without a GPU it still refuses the backend
in one line, and the start ends quietly."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import threading
import torch
from cp_debug import cuda_driver
from cp_debug.backends.factory import check_available
from cp_debug.backends.spec import BackendSpec
from cp_debug.errors import BackendUnavailableError

try:
    check_available(BackendSpec.parse("torch-cuda"))
    print("available")
except BackendUnavailableError as err:
    print("refused:", err)
print("started by the check" if cuda_driver._started is not None else "not started by the check")
cuda_driver.start()
first = cuda_driver._started
cuda_driver.start()  # a second start is the first one's
assert cuda_driver._started is first
cuda_driver.wait()
assert not first.is_alive()  # over, with or without a driver to start
print(torch.cuda.is_available())
if torch.cuda.is_available():
    print("tensor on", torch.ones(2, device="cuda").sum().device)
"""


def _run() -> list[str]:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()


def test_without_a_gpu_the_backend_is_refused_in_one_line_and_no_driver_start_is_left_behind():
    import torch

    if torch.cuda.device_count() > 0:
        pytest.skip("a GPU is visible here: the GPU test below covers this machine")
    out = _run()
    assert out[0].startswith("refused: torch-cuda needs a CUDA device"), out
    assert out[1:] == ["not started by the check", "False"], out


@pytest.mark.gpu
@pytest.mark.needs("cuda")
def test_with_a_gpu_the_driver_starts_beside_the_main_thread_and_torch_uses_it():
    out = _run()
    assert out == ["available", "started by the check", "True", "tensor on cuda:0"], out


def test_visible_devices_are_read_as_cuda_reads_them():
    """`CUDA_VISIBLE_DEVICES` within NVML's count: indices below it or UUIDs, up to the first entry naming none."""
    from cp_debug.cuda_driver import _within_visible

    assert _within_visible(2, None) == 2
    assert [_within_visible(2, v) for v in ("", "-1", "0", "1,0", "0,2,1", "GPU-1a2b,MIG-3c", "0,1,0,1")] == \
        [0, 0, 1, 2, 1, 2, 2]
    assert _within_visible(0, "0") == 0


def test_the_check_asks_no_library_where_the_driver_answers():
    """Issue 118, item 2: NVML's count through ctypes (None without an NVIDIA driver, never an error); the CUDA
    provider found as ONNX Runtime's library file, and where it is not there, ONNX Runtime asked: the same answer
    as `get_available_providers`. On a GPU host the CUDA pair is checked with neither torch nor onnxruntime in
    (tests/test_imports.py's first-phase test runs it in a fresh process there)."""
    import onnxruntime as ort

    from cp_debug.backends.factory import _ort_has_cuda
    from cp_debug.cuda_driver import visible_gpus

    got = visible_gpus()
    assert got is None or got >= 0
    assert _ort_has_cuda() == ("CUDAExecutionProvider" in ort.get_available_providers())
