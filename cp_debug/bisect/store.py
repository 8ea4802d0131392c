"""Reference tensors kept for comparison, within a memory budget: past it, arrays go to disk (memory-mapped).

Every spilled array gets a file name of its own (a counter that never repeats), so putting a name again can
never overwrite another name's file. The spill folder is removed on `close()`, when the store is collected,
and at interpreter exit (also after Ctrl-C or an error), through `weakref.finalize`.

The default budget (`default_budget`) is a share of the memory available when the run starts (`MemAvailable`,
within a cgroup's limit): a fixed 2 GiB spilled a torch reference's probes to disk even on a 128 GB host (87 writes,
2.4 s of a warm awml-base bisect on the H100, and seconds more deleting them at exit). `--memory-budget` overrides it.

The device tier (`enable_device`): a reference that runs on a GPU keeps its probes there as torch tensors, within a
budget of their own (`DEVICE_SHARE` of the free GPU memory), so that a candidate on the same device is compared
there (`compare/device_diff.py`) and only the figures cross to the host. A tensor past the device budget goes to
the host tier (`put_device` says no, the caller puts it on the host), and past that to disk. `get` always gives a
numpy array (a device tensor is copied out); `device_value` gives the tensor itself where there is one. At
awml-base `--level all` the host tier held 8.7 GB of probes a run (15.5 GB host RSS on the H100).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import weakref

import numpy as np

AUTO_SHARE = 0.25  # of the available memory, the default budget
DEVICE_SHARE = 0.4  # of the free GPU memory when the reference starts: the device tier's budget (the rest: the
# reference's module, a candidate's session and the probes it exposes at once)
_FALLBACK = 2 << 30  # when the available memory cannot be read
_FLOOR = 256 << 20


def available_memory() -> int | None:
    """Bytes this process could still take: /proc/meminfo's MemAvailable, capped by a cgroup v2 limit
    (memory.max - memory.current; a container sees the host's meminfo), else psutil's figure; None if unknown."""
    from cp_debug.heap import meminfo

    avail = meminfo("MemAvailable")
    if avail is None:
        try:
            import psutil  # optional: not a dependency, used where /proc is not
        except ImportError:
            return None
        avail = int(psutil.virtual_memory().available)
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current") as f:
                avail = min(avail, max(int(limit) - int(f.read().strip()), 0))
    except (OSError, ValueError):
        pass
    return avail


def default_budget() -> int:
    """The reference store's default budget: `AUTO_SHARE` of `available_memory()` (at least 256 MiB), 2 GiB when
    that cannot be read."""
    avail = available_memory()
    return _FALLBACK if avail is None else max(int(avail * AUTO_SHARE), _FLOOR)


class TensorStore:
    """`budget_bytes` of arrays in memory; the rest in .npy files. A budget of 0 puts every array on disk."""

    def __init__(self, budget_bytes: int = 2 << 30):
        if budget_bytes < 0:
            raise ValueError(f"memory budget must be >= 0 bytes, got {budget_bytes}")
        self.budget = budget_bytes
        self._mem: dict[str, np.ndarray] = {}
        self._disk: dict[str, str] = {}
        self._dir: str | None = None
        self._finalizer: weakref.finalize | None = None
        self._serial = itertools.count()
        self.in_memory = 0
        self.peak_in_memory = 0
        self.spilled = 0  # bytes ever written to disk
        self.device_budget = 0  # the device tier: off until `enable_device`
        self.device = None  # the torch device of the device tier
        self._dev: dict = {}  # name -> torch tensor
        self.on_device = 0
        self.peak_on_device = 0

    def enable_device(self, device, budget_bytes: int) -> None:
        """Keep up to `budget_bytes` of torch tensors on `device` (a torch.device; the tests use the CPU)."""
        self.device = device
        self.device_budget = max(int(budget_bytes), 0)

    def put_device(self, name: str, t) -> bool:
        """Keep a copy of torch tensor `t` (lent: it may change after the call) in the device tier, on the tier's
        device. False when the tier is off or full (the caller puts the value on the host instead)."""
        nbytes = t.numel() * t.element_size()
        if self.device is None or self.on_device + nbytes > self.device_budget:
            return False
        self.drop(name)
        self._dev[name] = t.detach().to(self.device, copy=True)
        self.on_device += nbytes
        self.peak_on_device = max(self.peak_on_device, self.on_device)
        return True

    def device_value(self, name: str):
        """The torch tensor kept in the device tier under `name`, else None."""
        return self._dev.get(name)

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of the value kept under `name` (without copying a device tensor out)."""
        t = self._dev.get(name)
        return tuple(t.shape) if t is not None else tuple(self.get(name).shape)

    def nbytes(self, name: str) -> int:
        """The size of the value kept under `name` (without copying a device tensor out)."""
        t = self._dev.get(name)
        if t is not None:
            return t.numel() * t.element_size()
        return self.get(name).nbytes

    @property
    def spill_dir(self) -> str | None:
        return self._dir

    def put(self, name: str, arr: np.ndarray, *, borrowed: bool = False) -> None:
        """Keep `arr` under `name`. `borrowed`: the array is only lent (a runner's reused buffer), so one kept in
        memory is copied (one written to disk needs no copy)."""
        self.drop(name)
        arr = np.ascontiguousarray(arr)
        if self.in_memory + arr.nbytes <= self.budget:
            self._mem[name] = arr.copy() if borrowed else arr
            self.in_memory += arr.nbytes
            self.peak_in_memory = max(self.peak_in_memory, self.in_memory)
            return
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="cpdebug-store-")
            self._finalizer = weakref.finalize(self, shutil.rmtree, self._dir, True)
        path = os.path.join(self._dir, f"{next(self._serial)}.npy")
        np.save(path, arr)
        self._disk[name] = path
        self.spilled += arr.nbytes

    def get(self, name: str) -> np.ndarray:
        """The value as a numpy array (a device tensor copied to the host: see `device_value`)."""
        t = self._dev.get(name)
        if t is not None:
            from cp_debug.compare.device_diff import host_array

            return host_array(t)
        if name in self._mem:
            return self._mem[name]
        return np.load(self._disk[name], mmap_mode="r")

    def __contains__(self, name: str) -> bool:
        return name in self._dev or name in self._mem or name in self._disk

    def __len__(self) -> int:
        return len(self._dev) + len(self._mem) + len(self._disk)

    def drop(self, name: str) -> None:
        t = self._dev.pop(name, None)
        if t is not None:
            self.on_device -= t.numel() * t.element_size()
        arr = self._mem.pop(name, None)
        if arr is not None:
            self.in_memory -= arr.nbytes
        path = self._disk.pop(name, None)
        if path:
            os.remove(path)

    def close(self) -> None:
        self._dev.clear()
        self.on_device = 0
        self._mem.clear()
        self._disk.clear()
        self.in_memory = 0
        if self._finalizer is not None:
            self._finalizer()  # removes the folder once; later calls are no-ops
            self._finalizer = None
        self._dir = None

    def __enter__(self) -> TensorStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
