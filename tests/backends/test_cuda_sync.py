"""How a thread waiting on the GPU waits (`CPDEBUG_CUDA_SYNC`, `cuda_driver.sync_mode` / `set_schedule`): unset, CUDA's
own; a bad value one line naming the variable and its values, for every backend on CUDA before its own checks and
in a Ray sweep's driver before Ray starts; a Ray actor takes the driver's value, not its node's; without a driver
nothing is set, quietly; on a GPU (marked `gpu`), the primary context torch then makes carries the flag."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cp_debug import cuda_driver
from cp_debug.errors import BadInputError


def test_unset_is_cudas_own_and_each_value_is_cudas_name(monkeypatch):
    monkeypatch.delenv(cuda_driver.SYNC_ENV, raising=False)
    assert cuda_driver.sync_mode() is None
    for value, flag in (("blocking", 0x4), (" Spin ", 0x1), ("yield", 0x2), ("auto", 0x0)):
        monkeypatch.setenv(cuda_driver.SYNC_ENV, value)
        mode = cuda_driver.sync_mode()
        assert cuda_driver.SCHEDULES[mode] == flag  # cuda.h's CU_CTX_SCHED_BLOCKING_SYNC, _SPIN, _YIELD, _AUTO


def test_a_bad_value_is_one_line_that_names_the_variable_and_its_values(monkeypatch):
    monkeypatch.setenv(cuda_driver.SYNC_ENV, "sleepy")
    with pytest.raises(BadInputError) as err:
        cuda_driver.sync_mode()
    assert str(err.value).startswith("CPDEBUG_CUDA_SYNC='sleepy': use one of auto, spin, yield, blocking")
    assert "\n" not in str(err.value)


def test_a_ray_driver_refuses_a_bad_value_before_ray_starts(monkeypatch):
    from cp_debug.sweep import executor as ex

    class CudaSettings:
        def on_cuda(self) -> bool:
            return True

    started = []
    monkeypatch.setattr(ex, "ray_module", lambda: started.append("ray") or pytest.fail("Ray was asked for"))
    monkeypatch.setenv(cuda_driver.SYNC_ENV, "sleepy")
    with pytest.raises(BadInputError, match="CPDEBUG_CUDA_SYNC='sleepy'"):
        ex.RayExecutor(CudaSettings(), address="local").start()
    assert started == []


def test_every_backend_on_cuda_says_a_bad_value_before_anything_else(monkeypatch):
    # before its own checks (this CPU machine has no CUDA provider and no GPU: a bad value is still the first line)
    from cp_debug.backends.factory import check_available
    from cp_debug.backends.spec import BackendSpec

    monkeypatch.setenv(cuda_driver.SYNC_ENV, "sleepy")
    for label in ("ort-cuda-fp16", "torch-cuda"):
        with pytest.raises(BadInputError, match="CPDEBUG_CUDA_SYNC='sleepy'"):
            check_available(BackendSpec.parse(label))
    check_available(BackendSpec.parse("ort-cpu"))  # not on CUDA: not read


def test_a_ray_actor_takes_the_drivers_value_not_its_nodes(monkeypatch):
    """What `ActorBody` does first (`actor.drivers_sync`): the actor's process (its node's environment) is given
    the driver's value, or none, for every later check in it."""
    import os

    from cp_debug.sweep.actor import drivers_sync

    monkeypatch.setenv(cuda_driver.SYNC_ENV, "sleepy")  # the node's own, and bad
    drivers_sync(None)
    assert cuda_driver.SYNC_ENV not in os.environ and cuda_driver.sync_mode() is None
    drivers_sync("blocking")
    assert os.environ[cuda_driver.SYNC_ENV] == "blocking" and cuda_driver.sync_mode() == "blocking"


def test_without_a_driver_nothing_is_set_and_nothing_raises():
    # a machine without libcuda (this CPU machine; CI's): False, quietly, whatever the value
    code = ("import ctypes\n"
            "try:\n    ctypes.CDLL('libcuda.so.1'); print('driver')\n"
            "except OSError:\n    from cp_debug import cuda_driver; print(cuda_driver.set_schedule('blocking'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    if out == "driver":
        pytest.skip("a CUDA driver is installed here: tests/backends/test_cuda_sync.py's GPU test covers it")
    assert out == "False"


GPU_SCRIPT = """
import ctypes, os
from cp_debug import cuda_driver
os.environ[cuda_driver.SYNC_ENV] = "blocking"
cuda_driver.start(); cuda_driver.wait()  # set on this thread before the driver starts on its own
import torch
torch.zeros(1, device="cuda")  # torch makes the primary context
cuda = ctypes.CDLL("libcuda.so.1")
dev, flags, active = ctypes.c_int(0), ctypes.c_uint(0), ctypes.c_int(0)
cuda.cuDeviceGet(ctypes.byref(dev), 0)
cuda.cuDevicePrimaryCtxGetState(dev, ctypes.byref(flags), ctypes.byref(active))
print(active.value, flags.value & 0x7)
"""


@pytest.mark.gpu
@pytest.mark.needs("cuda")
def test_on_a_gpu_the_context_torch_makes_carries_the_flag():
    out = subprocess.run([sys.executable, "-c", GPU_SCRIPT], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "4"]  # active, CU_CTX_SCHED_BLOCKING_SYNC
